// Package alcovetest runs a real Alcove cluster in-process for tests: one
// master and one worker per named node, on loopback ports.
package alcovetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/worker"
)

// Cluster is a master and workers named after Kubernetes nodes.
type Cluster struct {
	t          testing.TB
	dir, ufs   string
	MasterAddr string
	Master     *master.Master
	Workers    map[string]*worker.Worker
	clients    map[string]*client.Client
	opts       Options
}

// Options tune StartWith; zero values take the defaults.
type Options struct {
	// RootUFS is mounted at / (default: a new temporary directory).
	RootUFS string
	// RootUFSProperties are the root mount's options (e.g. S3 credentials).
	RootUFSProperties map[string]string
	// TierBytes is each worker's MEM tier size (default 1 GiB).
	TierBytes int64
	// TierDir holds each worker's MEM tier (a new directory under it per
	// worker; default: a temporary directory). Benchmarks put it on tmpfs.
	TierDir string
	// TokenLifetime is the master's block token lifetime (default 10 min).
	TokenLifetime time.Duration
}

// Start runs a master and one worker per node (1 GiB MEM tier each).
func Start(t testing.TB, nodes ...string) *Cluster {
	t.Helper()
	return StartWith(t, Options{}, nodes...)
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options, nodes ...string) *Cluster {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &Cluster{t: t, dir: t.TempDir(), ufs: opts.RootUFS, MasterAddr: addr, Workers: map[string]*worker.Worker{}, clients: map[string]*client.Client{}, opts: opts}
	if opts.TierBytes == 0 {
		opts.TierBytes = 1 << 30
	}
	if c.ufs == "" {
		c.ufs = t.TempDir()
	}
	c.StartMaster()
	for _, n := range nodes {
		tier := t.TempDir()
		if opts.TierDir != "" {
			var err error
			if tier, err = os.MkdirTemp(opts.TierDir, "alcove-tier-"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tier) })
		}
		w, err := worker.New(worker.Config{
			MasterAddresses: []string{addr}, Address: "127.0.0.1:0", Node: n,
			DomainSocket: filepath.Join(t.TempDir(), "w.sock"), DataAddress: "127.0.0.1:0", WebAddress: "127.0.0.1:0",
			Tiers:             []blockstore.TierConfig{{Alias: "MEM", Dir: tier, QuotaBytes: opts.TierBytes}},
			HeartbeatInterval: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Workers[n] = w
	}
	t.Cleanup(c.Close)
	return c
}

// StartMaster (re)starts the master on the same directory and address.
func (c *Cluster) StartMaster() {
	c.t.Helper()
	cfg := master.Config{Dir: c.dir, Address: c.MasterAddr, RootUFS: c.ufs, RootUFSProperties: c.opts.RootUFSProperties, WorkerTimeout: 5 * time.Second,
		TokenLifetime: c.opts.TokenLifetime}
	m, err := master.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var startErr error
	for range 50 { // the port may linger briefly after a restart
		if startErr = m.Start(ctx); startErr == nil {
			c.Master = m
			return
		}
		m, _ = master.New(cfg)
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal(startErr)
}

// StopMaster closes the master (workers keep running and re-register when
// it comes back).
func (c *Cluster) StopMaster() {
	c.t.Helper()
	if c.Master != nil {
		if err := c.Master.Close(); err != nil {
			c.t.Error(err)
		}
		c.Master = nil
	}
}

// Client returns a client running on node (it writes to that node's worker).
func (c *Cluster) Client(node string) *client.Client {
	c.t.Helper()
	if cl := c.clients[node]; cl != nil {
		return cl
	}
	cl, err := client.New(client.Config{MasterAddresses: []string{c.MasterAddr}, Node: node, WriteType: apiv1.WriteType_MUST_CACHE, BlockSize: 1 << 20, RetryTimeout: 20 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.clients[node] = cl
	return cl
}

// Write creates path with size bytes from a client on node, so its blocks
// are cached on that node's worker.
func (c *Cluster) Write(node, path string, size int) {
	c.t.Helper()
	c.WriteType(node, path, size, apiv1.WriteType_MUST_CACHE)
}

// WriteType writes like Write with a write type (THROUGH: not cached).
func (c *Cluster) WriteType(node, path string, size int, wt apiv1.WriteType) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := c.Client(node).Create(ctx, path, client.WriteOptions{Recursive: true, WriteType: wt})
	if err != nil {
		c.t.Fatalf("create %s on %s: %v", path, node, err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{'x'}, size)); err != nil {
		c.t.Fatalf("write %s on %s: %v", path, node, err)
	}
	if err := w.Close(); err != nil {
		c.t.Fatalf("close %s on %s: %v", path, node, err)
	}
}

// WaitCached waits until the master's index shows bytes of prefix on node.
func (c *Cluster) WaitCached(prefix, node string, bytes int64) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := c.Master.CachedBytesByPrefix()[prefix][node]
		if got == bytes {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("master index %s@%s = %d, want %d", prefix, node, got, bytes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MasterCalls counts the master's RPCs by method name so far.
func (c *Cluster) MasterCalls() map[string]uint64 {
	c.t.Helper()
	return MasterCallsOf(c.t, c.Master)
}

// MasterCallsOf counts m's RPCs by method name so far.
func MasterCallsOf(t testing.TB, m *master.Master) map[string]uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "alcove_master_rpc_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					out[path.Base(l.GetValue())] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

// CallsSince is after minus before, per method (MasterCalls).
func CallsSince(after, before map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// Close stops everything.
func (c *Cluster) Close() {
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients = map[string]*client.Client{}
	for n, w := range c.Workers {
		if err := w.Close(); err != nil {
			c.t.Log(fmt.Errorf("close worker %s: %w", n, err))
		}
		delete(c.Workers, n)
	}
	c.StopMaster()
}
