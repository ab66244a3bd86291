//go:build tools

// Package tools pins promtool, which the chart tests run on the PrometheusRule the chart renders
// (`promtool check rules`, `promtool test rules`). Prometheus 3.x is tagged v0.3xx.y for Go.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
