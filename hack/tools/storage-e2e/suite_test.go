// Package storagee2e is the Kubernetes storage conformance suite for an
// installed CSI driver: every test of k8s.io/kubernetes/test/e2e/storage/testsuites,
// instantiated by test/e2e/storage/external for the drivers named with
// -storage.testdriver=FILE (Alcove's: test/conformance/driver.yaml).
//
// The whole k8s.io/kubernetes/test/e2e package does not build from the Go
// module proxy (it imports k8s.io/sample-apiserver, which is not served);
// this package is what test/e2e/e2e_test.go does, restricted to storage:
// the framework's flags, then ginkgo.RunSpecs. hack/conformance.sh builds it
// with `go test -c` and runs it against the cluster of hack/cluster.sh.
package storagee2e

import (
	"flag"
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"
	"k8s.io/kubernetes/test/e2e/framework/testfiles"
	e2etestingmanifests "k8s.io/kubernetes/test/e2e/testing-manifests"

	// As test/e2e: dump a failed spec's namespace, check every node is
	// Ready after each spec.
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	// The storage suites, instantiated for -storage.testdriver drivers.
	_ "k8s.io/kubernetes/test/e2e/storage/external"
)

func TestMain(m *testing.M) {
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()
	testfiles.AddFileSource(e2etestingmanifests.GetE2ETestingManifestsFS())
	framework.AfterReadingAllFlags(&framework.TestContext)
	os.Exit(m.Run())
}

func TestStorage(t *testing.T) {
	logs.InitLogs()
	defer logs.FlushLogs()
	klog.EnableContextualLogging(true)
	gomega.RegisterFailHandler(framework.Fail)
	suiteConfig, reporterConfig := framework.CreateGinkgoConfig()
	ginkgo.RunSpecs(t, "Kubernetes storage suite (external driver)", suiteConfig, reporterConfig)
}
