//go:build tools

// Package tools pins the CSI external-provisioner sidecar that
// hack/cluster-bins.sh builds for the end-to-end cluster.
package tools

import _ "github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner"
