package locality_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/worker"
	"github.com/alcove-io/alcove/extender/locality"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// With three masters the feed finds the leader although its first address
// is a standby (which answers the stream with NotLeader), and after the
// leader stops it follows the new one: the index is synced again with the
// new leader's snapshot and entries. (masterconn once routed a failed
// stream only while the stream's own context was live, which gRPC cancels
// when the stream fails: the feed kept reopening on the standby.)
func TestFeedFollowsLeader(t *testing.T) {
	g := alcovetest.StartGroup(t, 3)
	l := g.Leader(30 * time.Second)
	addrs := g.Addrs()
	// Standbys first: the feed must be redirected to the leader.
	order := []string{addrs[(l+1)%3], addrs[(l+2)%3], addrs[l]}
	w, err := worker.New(worker.Config{
		MasterAddresses: order, Address: "127.0.0.1:0", Node: "node-a",
		Tiers:             []blockstore.TierConfig{{Alias: "MEM", Dir: t.TempDir(), QuotaBytes: 64 << 20}},
		HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	cl, err := client.New(client.Config{MasterAddresses: order, Node: "node-a", WriteType: apiv1.WriteType_MUST_CACHE, BlockSize: 1 << 20, RetryTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	write := func(path string) {
		t.Helper()
		f, err := cl.Create(ctx, path, client.WriteOptions{Recursive: true})
		if err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
		if _, err := f.Write(bytes.Repeat([]byte{'x'}, 1<<20)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("/volumes/pvc-1/part-0")

	// The extender's own client: it makes no unary call that could have
	// found the leader for it, only the stream, first sent to a standby.
	fc, err := client.New(client.Config{MasterAddresses: order, Node: "alcove-extender", RetryTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	x := locality.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		locality.Feed(ctx, fc, x, locality.FeedConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, nil)
	}()
	has := func(want int64) func() bool {
		return func() bool {
			got, ok := lookup(x, "/volumes/pvc-1", "node-a")
			return ok && got[0] == want && x.Stats().Entries > 0
		}
	}
	waitIndex(t, x, "first snapshot from the leader", has(1<<20))
	epoch := x.Stats().Epoch

	g.Stop(l)
	g.Leader(30 * time.Second)
	waitIndex(t, x, "synced from the new leader", func() bool { return has(1<<20)() && x.Stats().Epoch != epoch })
	write("/volumes/pvc-1/part-1")
	waitIndex(t, x, "delta from the new leader", has(2<<20))
	cancel()
	<-done
}
