//go:build tools

// Package tools pins helm (built by hack/cluster-bins.sh).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
