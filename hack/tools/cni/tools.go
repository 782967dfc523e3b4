//go:build tools

// Package tools pins the CNI plugins the end-to-end cluster's pod network
// uses (built by hack/cluster-bins.sh).
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
)
