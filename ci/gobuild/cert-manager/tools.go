//go:build tools

// Package tools pins cert-manager's controller for the sandbox. v1.11.5 is the newest release
// whose commands live in the root module: from v1.12 on, cmd/controller is a module of its own,
// which the module proxy does not serve.
package tools

import _ "github.com/cert-manager/cert-manager/cmd/controller"
