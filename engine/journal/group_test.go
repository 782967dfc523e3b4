package journal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

// openGroup starts n members over TCP on loopback.
func openGroup(t *testing.T, n int) []*node {
	t.Helper()
	peers := make([]Peer, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers[i] = Peer{ID: fmt.Sprintf("j%d", i), Address: l.Addr().String()}
		l.Close()
	}
	nodes := make([]*node, n)
	for i := range n {
		dir := t.TempDir()
		sm, err := OpenBolt(filepath.Join(dir, "metadata.db"), kvApply)
		if err != nil {
			t.Fatal(err)
		}
		var others []Peer
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		j, err := Open(Config{Dir: dir, ID: peers[i].ID, BindAddress: peers[i].Address, Peers: others}, sm)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{j: j, sm: sm}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.j.Close()
				n.sm.Close()
			}
		}
	})
	return nodes
}

func waitGroupLeader(t *testing.T, nodes []*node) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range nodes {
			if n != nil && n.j.IsLeader() {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return -1
}

// TestGroupReplicatesAndFailsOver: a 3-member group replicates entries to
// every member, standbys refuse reads (VerifyRead) and writes, and after the
// leader stops the others elect a new one that has every entry.
func TestGroupReplicatesAndFailsOver(t *testing.T) {
	nodes := openGroup(t, 3)
	ctx := context.Background()
	l := waitGroupLeader(t, nodes)
	select {
	case <-nodes[l].j.LeadershipChanges():
	case <-time.After(5 * time.Second):
		t.Fatal("no leadership notification")
	}
	if err := nodes[l].j.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := nodes[l].j.Apply(ctx, entry(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[l].j.VerifyRead(ctx); err != nil {
		t.Fatalf("leader read barrier: %v", err)
	}
	s := (l + 1) % 3
	if err := nodes[s].j.VerifyRead(ctx); !errors.Is(err, meta.ErrNotLeader) {
		t.Fatalf("standby read barrier: %v, want ErrNotLeader", err)
	}
	if _, err := nodes[s].j.Apply(ctx, entry("on-standby")); !errors.Is(err, meta.ErrNotLeader) {
		t.Fatalf("apply on a standby: %v", err)
	}
	members, err := nodes[l].j.Members(ctx)
	if err != nil || len(members) != 3 {
		t.Fatalf("members %v %v", members, err)
	}
	for _, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for n.count(t, "r9") != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not apply r9", n.j.ID())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	nodes[l].j.Close()
	nodes[l].sm.Close()
	nodes[l] = nil
	nl := waitGroupLeader(t, nodes)
	if err := nodes[nl].j.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if nodes[nl].count(t, "r9") != 1 {
		t.Fatal("new leader lacks a committed entry")
	}
	if _, err := nodes[nl].j.Apply(ctx, entry("after")); err != nil {
		t.Fatalf("apply on the new leader: %v", err)
	}
}

// TestReadBarrierCoalesces: concurrent reads share rounds, and a read never
// rides on a round that started before it arrived.
func TestReadBarrierCoalesces(t *testing.T) {
	var rounds atomic.Int64
	var mu sync.Mutex
	var started []time.Time
	release := make(chan struct{})
	b := &readBarrier{verify: func() error {
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		rounds.Add(1)
		<-release
		return nil
	}}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- b.wait(ctx) }()
	for rounds.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	arrived := time.Now()
	var wg sync.WaitGroup
	var entered atomic.Int64
	for range 50 {
		wg.Go(func() {
			entered.Add(1)
			if err := b.wait(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	for entered.Load() != 50 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The 50 queued behind the running round share one or two more rounds
	// (one, unless the last stragglers reached the lock after it started).
	if got := rounds.Load(); got < 2 || got > 3 {
		t.Fatalf("%d rounds for 51 reads, want 2 or 3", got)
	}
	if !started[1].After(arrived) {
		t.Fatal("the second round started before the later reads arrived")
	}
	failing := &readBarrier{verify: func() error { return errors.New("deposed") }}
	if err := failing.wait(ctx); err == nil {
		t.Fatal("a failed round passed")
	}
}
