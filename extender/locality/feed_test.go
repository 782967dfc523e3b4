package locality_test

import (
	"context"
	"testing"
	"time"

	"github.com/alcove-io/alcove/extender/locality"
	"github.com/alcove-io/alcove/test/alcovetest"
)

func waitIndex(t *testing.T, x *locality.Index, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (stats %+v)", what, x.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookup(x *locality.Index, path string, nodes ...string) ([]int64, bool) {
	out := make([]int64, len(nodes))
	ok := x.Lookup([]string{path}, nodes, out)
	return out, ok
}

// The index follows the master's stream, goes unsynced while the master is
// down, and converges to the restarted master's state (a new snapshot built
// from workers re-registering), then keeps following deltas.
func TestFeedConvergesAfterMasterRestart(t *testing.T) {
	c := alcovetest.Start(t, "node-a", "node-b")
	const mb = 1 << 20
	c.Write("node-b", "/volumes/pvc-1/part-0", 3*mb)
	c.Write("node-a", "/volumes/pvc-1/part-1", mb)
	c.WaitCached("/volumes/pvc-1", "node-b", 3*mb)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := c.Client("extender")
	x := locality.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		locality.Feed(ctx, cl, x, locality.FeedConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, nil)
	}()
	want := func(a, b int64) func() bool {
		return func() bool {
			got, ok := lookup(x, "/volumes/pvc-1", "node-a", "node-b", "node-c")
			return ok && got[0] == a && got[1] == b && got[2] == 0
		}
	}
	waitIndex(t, x, "first snapshot", want(mb, 3*mb))
	epoch := x.Stats().Epoch

	// Deltas.
	c.Write("node-b", "/volumes/pvc-1/part-2", 2*mb)
	waitIndex(t, x, "delta after write", want(mb, 5*mb))

	// Master down: no opinion.
	c.StopMaster()
	waitIndex(t, x, "unsynced while the master is down", func() bool { return !x.Synced() })
	if _, ok := lookup(x, "/volumes/pvc-1", "node-a"); ok {
		t.Fatal("lookup answered while the master is down")
	}

	// Master back: workers re-register, the index re-snapshots.
	c.StartMaster()
	waitIndex(t, x, "converged after restart", func() bool { return want(mb, 5*mb)() && x.Stats().Epoch != epoch })
	c.Write("node-a", "/volumes/pvc-1/part-3", mb)
	waitIndex(t, x, "delta after restart", want(2*mb, 5*mb))
	cancel()
	<-done
}
