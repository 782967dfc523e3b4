package master

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// inodeLocks orders the operations that change a path in BOTH the UFS and the
// journal (delete, rename, overwrite, persist commit). Each such operation
// does "read the inode, act on the UFS, journal the result"; without a lock a
// persist commit could rename its temporary object into place after a delete
// of the same file had looked and found nothing persisted, and the file would
// come back from the UFS. An operation read-locks every ancestor of the paths
// it touches and write-locks the paths themselves, so a persist under a
// directory waits for a delete or rename of that directory, while unrelated
// files in one directory proceed in parallel. Locks are taken in ascending
// inode id order, so two operations never wait on each other in a cycle.
// Plain metadata operations (create, complete, setAttribute) only go through
// the journal and take no lock here.
type inodeLocks struct {
	mu    sync.Mutex
	locks map[int64]*inodeLock
}

type inodeLock struct {
	rw   sync.RWMutex
	refs int
}

func newInodeLocks() *inodeLocks { return &inodeLocks{locks: map[int64]*inodeLock{}} }

type lockReq struct {
	id    int64
	write bool
}

// acquire takes the locks (deduplicated, a write wins over a read) in id
// order and returns the function that releases them.
func (l *inodeLocks) acquire(reqs []lockReq) func() {
	want := map[int64]bool{}
	for _, r := range reqs {
		want[r.id] = want[r.id] || r.write
	}
	ids := make([]int64, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	held := make([]*inodeLock, len(ids))
	l.mu.Lock()
	for i, id := range ids {
		e := l.locks[id]
		if e == nil {
			e = &inodeLock{}
			l.locks[id] = e
		}
		e.refs++
		held[i] = e
	}
	l.mu.Unlock()
	for i, id := range ids {
		if want[id] {
			held[i].rw.Lock()
		} else {
			held[i].rw.RLock()
		}
	}
	return func() {
		for i, id := range ids {
			if want[id] {
				held[i].rw.Unlock()
			} else {
				held[i].rw.RUnlock()
			}
		}
		l.mu.Lock()
		for i, id := range ids {
			if held[i].refs--; held[i].refs == 0 {
				delete(l.locks, id)
			}
		}
		l.mu.Unlock()
	}
}

// maxLockAttempts bounds the retries when a concurrent rename moves a path
// between its resolution and its locking.
const maxLockAttempts = 16

// lockPaths write-locks the inodes at paths (those that exist) and
// read-locks their ancestors. It returns the nodes as they are under the
// lock (nil for a path that does not exist) and the release function.
// Callers must re-check everything they decided before from these nodes.
func (m *Master) lockPaths(ctx context.Context, paths ...string) ([]*node, func(), error) {
	for range maxLockAttempts {
		chains, err := m.resolveChains(paths)
		if err != nil {
			return nil, nil, err
		}
		unlock := m.locks.acquire(lockSet(chains, len(paths)))
		again, err := m.resolveChains(paths)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		if sameChains(chains, again) {
			return m.nodesOf(paths, again), unlock, nil
		}
		unlock()
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("lock %v: %w", paths, err)
		}
	}
	return nil, nil, fmt.Errorf("lock %v: %w: the paths keep changing under concurrent renames", paths, meta.ErrAborted)
}

// chain is the inodes of a path from the root down; it ends early (at the
// deepest existing ancestor) when the path does not exist.
type chain struct {
	inodes []*apiv1.Inode
	found  bool
	mount  *apiv1.MountPointInfo
}

func (m *Master) resolveChains(paths []string) ([]chain, error) {
	out := make([]chain, len(paths))
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := mounts(tx)
		if err != nil {
			return err
		}
		for i, p := range paths {
			comps := meta.Components(p)
			inodes, err := walk(tx, comps)
			if err != nil {
				return err
			}
			out[i] = chain{inodes: inodes, found: len(inodes) == len(comps)+1, mount: mountOf(all, p)}
		}
		return nil
	})
	return out, err
}

// lockSet read-locks every inode on the chains and write-locks the last
// inode of each chain that reached its path.
func lockSet(chains []chain, n int) []lockReq {
	var reqs []lockReq
	for i := range n {
		c := chains[i]
		for k, ino := range c.inodes {
			reqs = append(reqs, lockReq{id: ino.Id, write: c.found && k == len(c.inodes)-1})
		}
	}
	return reqs
}

func sameChains(a, b []chain) bool {
	for i := range a {
		if a[i].found != b[i].found || len(a[i].inodes) != len(b[i].inodes) {
			return false
		}
		for k := range a[i].inodes {
			if a[i].inodes[k].Id != b[i].inodes[k].Id {
				return false
			}
		}
	}
	return true
}

func (m *Master) nodesOf(paths []string, chains []chain) []*node {
	out := make([]*node, len(paths))
	for i, c := range chains {
		if c.found {
			out[i] = &node{path: paths[i], inode: c.inodes[len(c.inodes)-1], mount: c.mount}
		}
	}
	return out
}

// lockFile locks file id at its current path (see lockPaths); nil when the
// file no longer exists.
func (m *Master) lockFile(ctx context.Context, id int64) (*node, func(), error) {
	for range maxLockAttempts {
		var p string
		err := m.store.View(func(tx *bbolt.Tx) error {
			ino, err := getInode(tx, id)
			if err != nil || ino == nil || isOrphan(ino) {
				return err // an orphan has no path: gone for everyone else
			}
			p, err = pathOf(tx, ino)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		if p == "" {
			return nil, func() {}, nil
		}
		nodes, unlock, err := m.lockPaths(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		if nodes[0] != nil && nodes[0].inode.Id == id {
			return nodes[0], unlock, nil
		}
		unlock() // renamed or replaced meanwhile: look again
	}
	return nil, nil, fmt.Errorf("lock file %d: %w: it keeps moving under concurrent renames", id, meta.ErrAborted)
}
