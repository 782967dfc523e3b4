package master

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Node cache watch tuning.
const (
	// watchIdleEvent: an empty event is sent after this long without
	// changes, so watchers can tell a quiet master from a dead stream.
	watchIdleEvent = 10 * time.Second
	// watchMaxEntries bounds the entries of one delta event.
	watchMaxEntries = 50000
)

// cacheWatcher is one WatchNodeCache stream's pending changes. The index
// marks changed keys under its lock and never blocks: a slow watcher only
// accumulates a bigger (bounded: one per key) dirty set, so its next event
// carries the latest value of each key once.
type cacheWatcher struct {
	dirty         map[nodePrefix]struct{}
	prefixChanged bool
	wake          chan struct{} // capacity 1
}

func (w *cacheWatcher) markLocked(k nodePrefix) {
	w.dirty[k] = struct{}{}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// watch registers a watcher and returns it with the snapshot to send first.
func (x *cacheIndex) watch() (*cacheWatcher, []*apiv1.NodeCacheEntry, []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w := &cacheWatcher{dirty: map[nodePrefix]struct{}{}, wake: make(chan struct{}, 1)}
	x.watchers[w] = struct{}{}
	return w, x.snapshotLocked(), x.prefixListLocked()
}

func (x *cacheIndex) unwatch(w *cacheWatcher) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.watchers, w)
}

// drain takes up to limit pending changes of w with their current values.
// more says whether changes are left for another event.
func (x *cacheIndex) drain(w *cacheWatcher, limit int) (entries []*apiv1.NodeCacheEntry, prefixes []string, more bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range w.dirty {
		if len(entries) >= limit {
			more = true
			break
		}
		delete(w.dirty, k)
		entries = append(entries, &apiv1.NodeCacheEntry{Node: k.node, Path: k.prefix, Bytes: x.bytes[k]})
	}
	if w.prefixChanged {
		prefixes = x.prefixListLocked()
		w.prefixChanged = false
	}
	sortEntries(entries)
	return entries, prefixes, more
}

// watchCount returns the number of live watchers.
func (x *cacheIndex) watchCount() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.watchers)
}

// WatchNodeCache streams the node cache index: a snapshot, then deltas.
func (s *metaServer) WatchNodeCache(_ *apiv1.WatchNodeCacheRequest, stream grpc.ServerStreamingServer[apiv1.NodeCacheEvent]) error {
	m := s.m
	ctx := stream.Context()
	ended, epochp := m.lead.ended.Load(), m.lead.epoch.Load()
	if !m.lead.serving.Load() || ended == nil || epochp == nil {
		return m.notLeader("watch node cache")
	}
	epoch := *epochp
	logger := m.logger.WithValues("rpc", "WatchNodeCache")
	w, snap, prefixes := m.cidx.watch()
	defer m.cidx.unwatch(w)
	seq := int64(1)
	if err := stream.Send(&apiv1.NodeCacheEvent{Snapshot: true, Entries: snap, Prefixes: prefixes, Epoch: epoch, Sequence: seq}); err != nil {
		return fmt.Errorf("send node cache snapshot: %w", err)
	}
	logger.V(2).Info("Node cache watcher started", "entries", len(snap))
	idle := time.NewTimer(watchIdleEvent)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.done:
			return meta.ToStatus(fmt.Errorf("watch node cache: %w: master stopping", meta.ErrUnavailable))
		case <-*ended:
			return m.notLeader("watch node cache")
		case <-idle.C:
			seq++
			if err := stream.Send(&apiv1.NodeCacheEvent{Epoch: epoch, Sequence: seq}); err != nil {
				return fmt.Errorf("send node cache keepalive: %w", err)
			}
			idle.Reset(watchIdleEvent)
		case <-w.wake:
			for more := true; more; {
				var entries []*apiv1.NodeCacheEntry
				var pfx []string
				entries, pfx, more = m.cidx.drain(w, watchMaxEntries)
				if len(entries) == 0 && pfx == nil {
					break
				}
				seq++
				if err := stream.Send(&apiv1.NodeCacheEvent{Entries: entries, Prefixes: pfx, Epoch: epoch, Sequence: seq}); err != nil {
					return fmt.Errorf("send node cache delta: %w", err)
				}
			}
			idle.Reset(watchIdleEvent)
		}
	}
}

// GetNodeCache answers a point query of cached bytes per node for paths.
func (s *metaServer) GetNodeCache(_ context.Context, req *apiv1.GetNodeCacheRequest) (*apiv1.GetNodeCacheResponse, error) {
	paths := make([]string, 0, len(req.GetPaths()))
	for _, p := range req.GetPaths() {
		c, err := meta.CleanPath(p)
		if err != nil {
			return nil, meta.ToStatus(fmt.Errorf("get node cache: %w", err))
		}
		paths = append(paths, c)
	}
	return &apiv1.GetNodeCacheResponse{Entries: s.m.cidx.query(paths)}, nil
}

// resolvePaths records the paths of the files of blocks the index does not
// know yet. It reads the store and must run outside the registry lock.
func (m *Master) resolvePaths(blocks []int64) {
	files := make([]int64, 0, len(blocks))
	seen := map[int64]bool{}
	for _, b := range blocks {
		if f := meta.FileIDOf(b); !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	need := m.cidx.needPaths(files)
	if len(need) == 0 {
		return
	}
	paths := make(map[int64]string, len(need))
	_ = m.store.View(func(tx *bbolt.Tx) error {
		for _, f := range need {
			ino, err := getInode(tx, f)
			if err != nil || ino == nil {
				continue
			}
			if p, err := pathOf(tx, ino); err == nil {
				paths[f] = p
			}
		}
		return nil
	})
	m.cidx.setPaths(paths)
}

// refreshMounts hands the current mount points to the cache index.
func (m *Master) refreshMounts() error {
	all, err := m.mountTable()
	if err != nil {
		return fmt.Errorf("refresh cache index mounts: %w", err)
	}
	ps := make([]string, len(all))
	for i, mt := range all {
		ps[i] = mt.AlcovePath
	}
	sort.Strings(ps)
	m.cidx.setMounts(ps)
	return nil
}

// CachedBytesByPrefix returns the node cache index (prefix → node → bytes).
func (m *Master) CachedBytesByPrefix() map[string]map[string]int64 {
	x := m.cidx
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]map[string]int64{}
	for k, b := range x.bytes {
		if out[k.prefix] == nil {
			out[k.prefix] = map[string]int64{}
		}
		out[k.prefix][k.node] = b
	}
	return out
}

func newEpoch() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }
