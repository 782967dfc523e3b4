//go:build tools

// Package tools pins the Kubernetes commands hack/k8s-bins.sh builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
