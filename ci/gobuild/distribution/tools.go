//go:build tools

// Package tools pins the OCI registry the packaging tests push the chart to and install from
// (`helm push`, `helm install oci://`, `helm pull --verify`), served on loopback over plain HTTP.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
