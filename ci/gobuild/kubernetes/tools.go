//go:build tools

// Package tools pins the Kubernetes control-plane commands the sandbox runs; ci/build-go-tools.sh
// builds them. k8s.io/kubernetes replaces its k8s.io/* staging modules with local folders, which
// a module that depends on it does not have, so go.mod pins each one to the matching v0.37.x.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
