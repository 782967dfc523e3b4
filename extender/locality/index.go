// Package locality is the extender's in-memory index of cached bytes per
// (node, namespace path prefix). The master streams it (WatchNodeCache): a
// snapshot replaces the index, deltas update entries. Lookups never call
// the master; while the stream is down the index reports itself unsynced
// and the extender gives no opinion.
package locality

import (
	"sort"
	"strings"
	"sync"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Each child of meta.VolumesRoot (one directory per CSI volume) is an indexed
// prefix, as are the mount points (same rule as the master's index).
// Index is safe for concurrent use: many lookups, one feeder.
type Index struct {
	mu       sync.RWMutex
	mounts   []string                    // mount points, longest first
	bytes    map[string]map[string]int64 // prefix → node → bytes
	entries  int
	names    map[string]string // interned node names (one copy per node)
	epoch    string
	synced   bool
	syncedAt time.Time
	seq      int64
}

// New returns an empty, unsynced index.
func New() *Index {
	return &Index{bytes: map[string]map[string]int64{}, names: map[string]string{}}
}

// Apply applies one event of the master's stream. A snapshot replaces the
// index and marks it synced.
func (x *Index) Apply(ev *apiv1.NodeCacheEvent) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ev.GetSnapshot() {
		x.bytes = make(map[string]map[string]int64, len(x.bytes))
		x.entries = 0
		x.epoch = ev.GetEpoch()
		x.synced = true
		x.syncedAt = time.Now()
	}
	if ev.GetSnapshot() || len(ev.GetPrefixes()) > 0 {
		ms := append([]string(nil), ev.GetPrefixes()...)
		sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
		x.mounts = ms
	}
	x.seq = ev.GetSequence()
	for _, e := range ev.GetEntries() {
		nodes := x.bytes[e.GetPath()]
		if e.GetBytes() <= 0 {
			if _, ok := nodes[e.GetNode()]; ok {
				delete(nodes, e.GetNode())
				x.entries--
				if len(nodes) == 0 {
					delete(x.bytes, e.GetPath())
				}
			}
			continue
		}
		if nodes == nil {
			nodes = map[string]int64{}
			x.bytes[e.GetPath()] = nodes
		}
		node, ok := x.names[e.GetNode()]
		if !ok {
			node = e.GetNode()
			x.names[node] = node
		}
		if _, ok := nodes[node]; !ok {
			x.entries++
		}
		nodes[node] = e.GetBytes()
	}
}

// SetUnsynced marks the index stale (the stream broke): lookups report
// !synced until the next snapshot.
func (x *Index) SetUnsynced() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.synced = false
}

// Synced reports whether the index mirrors a live stream.
func (x *Index) Synced() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.synced
}

// Stats describes the index.
type Stats struct {
	Synced   bool
	Epoch    string
	Prefixes int
	Entries  int
	Sequence int64
}

// Stats returns the index's size and state.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return Stats{Synced: x.synced, Epoch: x.epoch, Prefixes: len(x.bytes), Entries: x.entries, Sequence: x.seq}
}

// PrefixOf returns the indexed prefix a path is counted under: the path's
// volume root (meta.VolumesRoot/NAME) when it lies under meta.VolumesRoot, else the
// deepest mount point containing it. A path below an indexed prefix is
// approximated by that prefix.
func (x *Index) PrefixOf(p string) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.prefixOfLocked(p)
}

func (x *Index) prefixOfLocked(p string) string {
	if strings.HasPrefix(p, meta.VolumesRoot+"/") {
		rest := p[len(meta.VolumesRoot)+1:]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return meta.VolumesRoot + "/" + rest
	}
	for _, m := range x.mounts {
		if meta.HasPrefix(p, m) {
			return m
		}
	}
	return "/"
}

// Lookup adds, for each node, the bytes cached under each of paths into
// out (len(out) == len(nodes)). Paths that map to the same indexed prefix
// count once. synced is false when the index does not mirror the master
// (out is left untouched then).
func (x *Index) Lookup(paths, nodes []string, out []int64) (synced bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.synced {
		return false
	}
	var seen [4]string
	prefixes := seen[:0]
	for _, p := range paths {
		pre := x.prefixOfLocked(p)
		dup := false
		for _, q := range prefixes {
			dup = dup || q == pre
		}
		if !dup {
			prefixes = append(prefixes, pre)
		}
	}
	for _, pre := range prefixes {
		byNode := x.bytes[pre]
		if len(byNode) == 0 {
			continue
		}
		for i, n := range nodes {
			out[i] += byNode[n]
		}
	}
	return true
}
