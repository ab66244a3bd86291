//go:build tools

// Package tools pins the newest Helm 3 the tests run (besides the prebuilt 3.17 and 4.3).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
