package master

import (
	"sort"
	"strings"
	"sync"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// nodePrefix keys the cache index: bytes of prefix cached on node.
type nodePrefix struct {
	node, prefix string
}

// cacheIndex keeps, incrementally, the bytes cached per (node, indexed
// prefix) and notifies watchers of changes. Indexed prefixes are the mount
// points and the directories directly under meta.VolumesRoot. The registry calls
// add under its own lock (lock order: registry → cacheIndex); the index
// never calls back into the registry or the store.
type cacheIndex struct {
	mu       sync.Mutex
	mounts   []string                   // mount points, sorted
	paths    map[int64]string           // file id → path, for files with cached bytes or resolved ahead
	fileNode map[int64]map[string]int64 // file id → node → cached bytes
	bytes    map[nodePrefix]int64       // the index
	watchers map[*cacheWatcher]struct{} // live watchers
}

func newCacheIndex() *cacheIndex {
	return &cacheIndex{
		mounts:   []string{"/"},
		paths:    map[int64]string{},
		fileNode: map[int64]map[string]int64{},
		bytes:    map[nodePrefix]int64{},
		watchers: map[*cacheWatcher]struct{}{},
	}
}

// prefixesOf returns the indexed prefixes containing p: every mount point
// above or at p, and meta.VolumesRoot/NAME when p is under it.
func (x *cacheIndex) prefixesOf(p string) []string {
	if p == "" {
		return nil
	}
	var out []string
	for _, m := range x.mounts {
		if meta.HasPrefix(p, m) {
			out = append(out, m)
		}
	}
	if v := volumeRootOf(p); v != "" && !contains(out, v) {
		out = append(out, v)
	}
	return out
}

// volumeRootOf returns meta.VolumesRoot/NAME when p is that directory or under it.
func volumeRootOf(p string) string {
	if !strings.HasPrefix(p, meta.VolumesRoot+"/") {
		return ""
	}
	rest := p[len(meta.VolumesRoot)+1:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" {
		return ""
	}
	return meta.VolumesRoot + "/" + rest
}

func contains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

// needPaths returns which of fileIDs have no known path yet.
func (x *cacheIndex) needPaths(fileIDs []int64) []int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []int64
	for _, f := range fileIDs {
		if _, ok := x.paths[f]; !ok {
			out = append(out, f)
		}
	}
	return out
}

// setPaths records resolved file paths (before their blocks are added).
func (x *cacheIndex) setPaths(paths map[int64]string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for f, p := range paths {
		if _, ok := x.paths[f]; !ok {
			x.paths[f] = p
		}
	}
}

// add changes the bytes of file cached on node by delta.
func (x *cacheIndex) add(node string, file, delta int64) {
	if delta == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	fn := x.fileNode[file]
	if fn == nil {
		fn = map[string]int64{}
		x.fileNode[file] = fn
	}
	if fn[node] += delta; fn[node] <= 0 {
		delete(fn, node)
	}
	for _, p := range x.prefixesOf(x.paths[file]) {
		x.bumpLocked(nodePrefix{node, p}, delta)
	}
	if len(fn) == 0 {
		delete(x.fileNode, file)
		delete(x.paths, file)
	}
}

func (x *cacheIndex) bumpLocked(k nodePrefix, delta int64) {
	old := x.bytes[k]
	v := old + delta
	if v <= 0 {
		v = 0
		delete(x.bytes, k)
	} else {
		x.bytes[k] = v
	}
	if old != v {
		for w := range x.watchers {
			w.markLocked(k)
		}
	}
}

// moveFileLocked re-attributes a file's bytes from its old prefixes to the
// prefixes of newPath.
func (x *cacheIndex) moveFileLocked(file int64, newPath string) {
	oldP := x.prefixesOf(x.paths[file])
	newP := x.prefixesOf(newPath)
	x.paths[file] = newPath
	for node, b := range x.fileNode[file] {
		for _, p := range oldP {
			if !contains(newP, p) {
				x.bumpLocked(nodePrefix{node, p}, -b)
			}
		}
		for _, p := range newP {
			if !contains(oldP, p) {
				x.bumpLocked(nodePrefix{node, p}, b)
			}
		}
	}
}

// renamed moves the files under src (or src itself) to dst.
func (x *cacheIndex) renamed(src, dst string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for f, p := range x.paths {
		if meta.HasPrefix(p, src) {
			x.moveFileLocked(f, meta.Join(dst, meta.RelPath(p, src)))
		}
	}
}

// setMounts replaces the mount points and re-attributes every file.
func (x *cacheIndex) setMounts(mountPoints []string) {
	ms := append([]string(nil), mountPoints...)
	if !contains(ms, "/") {
		ms = append(ms, "/")
	}
	sort.Strings(ms)
	x.mu.Lock()
	defer x.mu.Unlock()
	if strings.Join(ms, "\x00") == strings.Join(x.mounts, "\x00") {
		return
	}
	old := map[int64][]string{}
	for f, p := range x.paths {
		old[f] = x.prefixesOf(p)
	}
	x.mounts = ms
	for w := range x.watchers {
		w.prefixChanged = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	for f, p := range x.paths {
		newP := x.prefixesOf(p)
		for node, b := range x.fileNode[f] {
			for _, q := range old[f] {
				if !contains(newP, q) {
					x.bumpLocked(nodePrefix{node, q}, -b)
				}
			}
			for _, q := range newP {
				if !contains(old[f], q) {
					x.bumpLocked(nodePrefix{node, q}, b)
				}
			}
		}
	}
}

// snapshotLocked returns every non-zero entry, sorted by path then node.
func (x *cacheIndex) snapshotLocked() []*apiv1.NodeCacheEntry {
	out := make([]*apiv1.NodeCacheEntry, 0, len(x.bytes))
	for k, b := range x.bytes {
		out = append(out, &apiv1.NodeCacheEntry{Node: k.node, Path: k.prefix, Bytes: b})
	}
	sortEntries(out)
	return out
}

// prefixListLocked returns the mount points (the indexed prefixes besides
// the meta.VolumesRoot children, which watchers derive from a path themselves).
func (x *cacheIndex) prefixListLocked() []string {
	return append([]string(nil), x.mounts...)
}

func sortEntries(es []*apiv1.NodeCacheEntry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Path != es[j].Path {
			return es[i].Path < es[j].Path
		}
		return es[i].Node < es[j].Node
	})
}

// query returns cached bytes per node for each path: from the index for
// indexed prefixes, otherwise by summing the files under the path.
func (x *cacheIndex) query(paths []string) []*apiv1.NodeCacheEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*apiv1.NodeCacheEntry
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		sums := map[string]int64{}
		if x.isIndexedLocked(p) {
			for k, b := range x.bytes {
				if k.prefix == p {
					sums[k.node] = b
				}
			}
		} else {
			for f, fp := range x.paths {
				if meta.HasPrefix(fp, p) {
					for node, b := range x.fileNode[f] {
						sums[node] += b
					}
				}
			}
		}
		for node, b := range sums {
			if b > 0 {
				out = append(out, &apiv1.NodeCacheEntry{Node: node, Path: p, Bytes: b})
			}
		}
	}
	sortEntries(out)
	return out
}

func (x *cacheIndex) isIndexedLocked(p string) bool {
	return contains(x.mounts, p) || volumeRootOf(p) == p
}
