//go:build tools

// Package tools pins chart-testing's `ct`, whose `ct lint` the packaging tests run on the chart
// (it runs helm, yamllint and yamale, which come from the test dependencies).
package tools

import _ "github.com/helm/chart-testing/v3/ct"
