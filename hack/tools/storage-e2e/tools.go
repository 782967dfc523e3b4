//go:build tools

// Package tools pins agnhost, the image the suite's test pods run
// (registry.k8s.io/e2e-test-images/agnhost:2.53, built locally by
// hack/conformance-images.sh).
package tools

import _ "k8s.io/kubernetes/test/images/agnhost"
