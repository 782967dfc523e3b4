package master

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// watchState applies a WatchNodeCache stream to a map, as a watcher would.
type watchState struct {
	mu     sync.Mutex
	bytes  map[string]map[string]int64 // path → node → bytes
	events int
	snaps  int
	err    error
}

func (c *cluster) watchNodeCache(ctx context.Context) *watchState {
	c.t.Helper()
	st := &watchState{bytes: map[string]map[string]int64{}}
	stream, err := c.meta.WatchNodeCache(ctx, &apiv1.WatchNodeCacheRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			st.mu.Lock()
			if err != nil {
				st.err = err
				st.mu.Unlock()
				return
			}
			st.events++
			if ev.Snapshot {
				st.snaps++
				st.bytes = map[string]map[string]int64{}
			}
			for _, e := range ev.Entries {
				if st.bytes[e.Path] == nil {
					st.bytes[e.Path] = map[string]int64{}
				}
				if e.Bytes == 0 {
					delete(st.bytes[e.Path], e.Node)
				} else {
					st.bytes[e.Path][e.Node] = e.Bytes
				}
			}
			st.mu.Unlock()
		}
	}()
	return st
}

func (s *watchState) get(path, node string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes[path][node]
}

func (s *watchState) equals(want map[string]map[string]int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(clean(s.bytes)) == fmt.Sprint(clean(want))
}

func clean(m map[string]map[string]int64) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for p, nodes := range m {
		for n, b := range nodes {
			if b != 0 {
				if out[p] == nil {
					out[p] = map[string]int64{}
				}
				out[p][n] = b
			}
		}
	}
	return out
}

func TestNodeCacheIndexIncremental(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	w := c.watchNodeCache(ctx)
	const mb = 1 << 20
	a := c.writeFile("/volumes/pvc-1/a", 3*mb, apiv1.WriteType_MUST_CACHE)
	b := c.writeFile("/volumes/pvc-1/sub/b", 2*mb, apiv1.WriteType_MUST_CACHE)
	other := c.writeFile("/volumes/pvc-2/c", mb, apiv1.WriteType_MUST_CACHE)
	wa := c.register("10.0.0.1:29999", "node-a")
	wb := c.register("10.0.0.2:29999", "node-b")
	c.commit(wa, a, "MEM")
	c.commit(wb, b, "MEM")
	c.commit(wb, other, "MEM")
	want := map[string]map[string]int64{
		"/":              {"node-a": 3 * mb, "node-b": 3 * mb},
		"/volumes/pvc-1": {"node-a": 3 * mb, "node-b": 2 * mb},
		"/volumes/pvc-2": {"node-b": mb},
	}
	if got := c.m.CachedBytesByPrefix(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("index after commits = %v, want %v", got, want)
	}
	eventually(t, "watcher sees commits", 5*time.Second, func() bool { return w.equals(want) })

	// Eviction through a heartbeat.
	c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wa, RemovedBlockIds: []int64{a.BlockIds[0]}})
	want["/"]["node-a"] = 2 * mb
	want["/volumes/pvc-1"]["node-a"] = 2 * mb
	eventually(t, "watcher sees eviction", 5*time.Second, func() bool { return w.equals(want) })

	// Point queries: an indexed prefix, an arbitrary directory, a file.
	resp, err := c.meta.GetNodeCache(c.ctx, &apiv1.GetNodeCacheRequest{Paths: []string{"/volumes/pvc-1", "/volumes/pvc-1/sub", "/volumes/pvc-2/c", "/nothing"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]int64{}
	for _, e := range resp.Entries {
		if got[e.Path] == nil {
			got[e.Path] = map[string]int64{}
		}
		got[e.Path][e.Node] = e.Bytes
	}
	wantQ := map[string]map[string]int64{
		"/volumes/pvc-1":     {"node-a": 2 * mb, "node-b": 2 * mb},
		"/volumes/pvc-1/sub": {"node-b": 2 * mb},
		"/volumes/pvc-2/c":   {"node-b": mb},
	}
	if fmt.Sprint(got) != fmt.Sprint(wantQ) {
		t.Fatalf("GetNodeCache = %v, want %v", got, wantQ)
	}

	// Rename moves bytes between volume roots.
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/volumes/pvc-1/sub", Dst: "/volumes/pvc-2/sub"}); err != nil {
		t.Fatal(err)
	}
	want["/volumes/pvc-1"] = map[string]int64{"node-a": 2 * mb}
	want["/volumes/pvc-2"]["node-b"] = 3 * mb
	eventually(t, "watcher sees rename", 5*time.Second, func() bool { return w.equals(want) })

	// Delete drops the file's cached bytes.
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/volumes/pvc-1", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	delete(want, "/volumes/pvc-1")
	want["/"]["node-a"] = 0
	eventually(t, "watcher sees delete", 5*time.Second, func() bool { return w.equals(want) })

	// A mount point becomes an indexed prefix.
	mnt := t.TempDir()
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/data", UfsUri: mnt}); err != nil {
		t.Fatal(err)
	}
	d := c.writeFile("/data/x", mb, apiv1.WriteType_MUST_CACHE)
	c.commit(wa, d, "MEM")
	want["/"]["node-a"] = mb
	want["/data"] = map[string]int64{"node-a": mb}
	eventually(t, "watcher sees mount", 5*time.Second, func() bool { return w.equals(want) })

	// Losing a worker (re-register with no blocks) empties its node.
	c.register("10.0.0.2:29999", "node-b")
	want["/"]["node-b"] = 0
	delete(want, "/volumes/pvc-2")
	eventually(t, "watcher sees re-register", 5*time.Second, func() bool { return w.equals(want) })
	if w.snaps != 1 {
		t.Fatalf("snapshots = %d, want 1", w.snaps)
	}
}

// A watcher that never reads must not block the master, and many watchers
// each converge on the final state.
func TestNodeCacheWatchSlowAndManyWatchers(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	// A stalled watcher: opened, never received from.
	if _, err := c.meta.WatchNodeCache(ctx, &apiv1.WatchNodeCacheRequest{}); err != nil {
		t.Fatal(err)
	}
	var ws []*watchState
	for range 20 {
		ws = append(ws, c.watchNodeCache(ctx))
	}
	eventually(t, "watchers registered", 5*time.Second, func() bool { return c.m.cidx.watchCount() == 21 })
	wid := c.register("10.0.0.1:29999", "node-a")
	const files = 50
	start := time.Now()
	var total int64
	for i := range files {
		fi := c.writeFile(fmt.Sprintf("/volumes/v%d/f%d", i%5, i), 4<<20, apiv1.WriteType_MUST_CACHE)
		for j := range 40 { // many small changes per file: evict and re-add
			blk := fi.BlockIds[j%len(fi.BlockIds)]
			c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wid, AddedBlocks: []*apiv1.WorkerBlock{{BlockId: blk, Length: 1 << 20, Tier: "MEM"}}})
			if j < 39 {
				c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wid, RemovedBlockIds: []int64{blk}})
			}
		}
		total += 1 << 20
	}
	t.Logf("%d block changes with 21 watchers (one stalled) in %v", files*79, time.Since(start))
	for i, w := range ws {
		eventually(t, fmt.Sprintf("watcher %d converges", i), 10*time.Second, func() bool { return w.get("/", "node-a") == total })
	}
}

// After a master restart the registry is rebuilt by workers registering;
// a new watch gets a fresh snapshot with a new epoch.
func TestNodeCacheAfterRestart(t *testing.T) {
	c := newCluster(t)
	fi := c.writeFile("/volumes/pvc-9/f", 2<<20, apiv1.WriteType_MUST_CACHE)
	w := c.register("10.0.0.1:29999", "node-a")
	c.commit(w, fi, "MEM")
	first, err := c.meta.WatchNodeCache(c.ctx, &apiv1.WatchNodeCacheRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := first.Recv()
	if err != nil || !ev.Snapshot || len(ev.Entries) != 2 {
		t.Fatalf("first snapshot %v, %v", ev, err)
	}
	c = c.restart()
	if _, err := first.Recv(); err == nil {
		t.Fatal("stream survived the master restart")
	}
	blocks := []*apiv1.WorkerBlock{{BlockId: fi.BlockIds[0], Length: 1 << 20, Tier: "MEM"}, {BlockId: fi.BlockIds[1], Length: 1 << 20, Tier: "MEM"}}
	c.register("10.0.0.1:29999", "node-a", blocks...)
	second, err := c.meta.WatchNodeCache(c.ctx, &apiv1.WatchNodeCacheRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev2, err := second.Recv()
	if err != nil || !ev2.Snapshot || ev2.Epoch == ev.Epoch {
		t.Fatalf("second snapshot %v, %v (first epoch %s)", ev2, err, ev.Epoch)
	}
	got := map[string]int64{}
	for _, e := range ev2.Entries {
		got[e.Path+"@"+e.Node] = e.Bytes
	}
	if got["/volumes/pvc-9@node-a"] != 2<<20 || got["/@node-a"] != 2<<20 {
		t.Fatalf("snapshot after restart: %v", got)
	}
}
