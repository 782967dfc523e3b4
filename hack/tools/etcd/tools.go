//go:build tools

// Package tools pins the etcd server hack/k8s-bins.sh builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
