// Package sanity runs the CSI conformance suite (csi-sanity, csi-test v5)
// against the real Alcove CSI driver: controller and node services, real
// FUSE daemons and mounts, and a real master and worker on loopback.
package sanity

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/alcove-io/alcove/csi"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/worker"
	"github.com/alcove-io/alcove/test/prereq"
)

// buildAlcove builds the binary the node service runs as `alcove fuse`.
func buildAlcove(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "alcove")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/alcove-io/alcove/cmd/alcove").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestCSISanity(t *testing.T) {
	prereq.Root(t) // csi-sanity mounts FUSE volumes and bind mounts
	prereq.DevFuse(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	m, err := master.New(master.Config{Dir: filepath.Join(dir, "master"), Address: "127.0.0.1:0", RootUFS: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w, err := worker.New(worker.Config{
		MasterAddresses: []string{m.Addr()}, Address: "127.0.0.1:0", DataAddress: "127.0.0.1:0", Node: "sanity-node",
		DomainSocket: filepath.Join(dir, "w.sock"), HeartbeatInterval: 100 * time.Millisecond,
		Tiers: []blockstore.TierConfig{{Alias: "MEM", Dir: filepath.Join(dir, "mem"), QuotaBytes: 256 << 20}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c, err := client.New(client.Config{MasterAddresses: []string{m.Addr()}, Node: "sanity-node"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	d, err := csi.New(csi.Config{
		Endpoint: endpoint, NodeID: "sanity-node", Mode: csi.ModeAll, Version: "sanity",
		Node: csi.NodeConfig{
			StateDir: filepath.Join(dir, "state"), AlcoveBinary: buildAlcove(t),
			MasterAddresses: []string{m.Addr()}, CheckInterval: time.Second,
		},
	}, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "csi-mount")
	cfg.StagingPath = filepath.Join(dir, "csi-staging")
	cfg.IdempotentCount = 2
	sanity.Test(t, cfg)
}
