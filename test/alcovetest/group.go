package alcovetest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/master"
)

// Group is an HA group of in-process masters: a raft group over TCP on
// loopback (real members, one process). test/failover runs them as processes.
type Group struct {
	t       testing.TB
	ufs     string
	cfgs    []master.Config
	Masters []*master.Master // nil while stopped
}

// StartGroup starts n masters sharing a UFS; opts adjust every config.
func StartGroup(t testing.TB, n int, opts ...func(*master.Config)) *Group {
	t.Helper()
	g := &Group{t: t, ufs: t.TempDir(), Masters: make([]*master.Master, n)}
	var ls []net.Listener
	for range 2 * n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	peers := make([]journal.Peer, n)
	for i := range n {
		peers[i] = journal.Peer{ID: fmt.Sprintf("m%d", i), Address: ls[2*i+1].Addr().String()}
	}
	for _, l := range ls {
		l.Close()
	}
	dir := t.TempDir()
	for i := range n {
		var others []journal.Peer
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		cfg := master.Config{
			Dir: filepath.Join(dir, peers[i].ID), Address: ls[2*i].Addr().String(), RootUFS: g.ufs,
			WorkerTimeout: 5 * time.Second, JournalID: peers[i].ID, JournalBindAddress: peers[i].Address, JournalPeers: others,
		}
		for _, o := range opts {
			o(&cfg)
		}
		g.cfgs = append(g.cfgs, cfg)
	}
	t.Cleanup(g.Close)
	for i := range n {
		g.Start(i)
	}
	g.Leader(30 * time.Second)
	return g
}

// Start (re)starts member i on its directory and addresses.
func (g *Group) Start(i int) {
	g.t.Helper()
	var err error
	for range 50 { // a port of the previous run may linger for a moment
		var m *master.Master
		if m, err = master.New(g.cfgs[i]); err != nil {
			g.t.Fatal(err)
		}
		if err = m.Start(context.Background()); err == nil {
			g.Masters[i] = m
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("start master %d: %v", i, err)
}

// Stop closes member i.
func (g *Group) Stop(i int) {
	g.t.Helper()
	if g.Masters[i] == nil {
		return
	}
	if err := g.Masters[i].Close(); err != nil {
		g.t.Errorf("close master %d: %v", i, err)
	}
	g.Masters[i] = nil
}

// Addrs returns every member's RPC address.
func (g *Group) Addrs() []string {
	var out []string
	for _, c := range g.cfgs {
		out = append(out, c.Address)
	}
	return out
}

// Leader waits for a serving leader among the running members.
func (g *Group) Leader(timeout time.Duration) int {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for i, m := range g.Masters {
			if m != nil && m.Serving() {
				return i
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no leader within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops every member.
func (g *Group) Close() {
	for i := range g.Masters {
		g.Stop(i)
	}
}
