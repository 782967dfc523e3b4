package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
)

// SyncAlways as Config.MetadataSyncInterval re-reads UFS metadata on every
// access (Alluxio's alluxio.user.file.metadata.sync.interval=0).
const SyncAlways = time.Nanosecond

// maxSyncTimes bounds the remembered sync times; when full they are all
// forgotten, which costs extra syncs but never skips one that is due.
const maxSyncTimes = 1 << 18

// syncTimes remembers when inodes' UFS metadata was last read, for
// alluxio.user.file.metadata.sync.interval. It lives in the leader's memory
// only: after a restart or failover everything is due once.
type syncTimes struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (s *syncTimes) due(id int64, interval time.Duration, now time.Time) bool {
	switch {
	case interval < 0:
		return false
	case interval == 0:
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[id]
	return !ok || now.Sub(t) >= interval
}

func (s *syncTimes) mark(now time.Time, ids ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil || len(s.at)+len(ids) > maxSyncTimes {
		s.at = make(map[int64]time.Time, min(len(ids), maxSyncTimes))
	}
	for _, id := range ids {
		s.at[id] = now
	}
}

// syncInterval is how old a path's UFS metadata may get under mount mnt:
// the caller's setting, else the mount's option, else the master's. A
// negative interval means never; 0, on every access.
func (m *Master) syncInterval(reqMs *int64, mnt *apiv1.MountPointInfo) time.Duration {
	if reqMs != nil {
		if *reqMs < 0 {
			return -1
		}
		return time.Duration(*reqMs) * time.Millisecond
	}
	if v, ok := m.mountProps(mnt)[conf.UserMetadataSyncInterval]; ok {
		if d, err := conf.ParseSyncInterval(v); err == nil {
			return d
		}
	}
	if m.cfg.MetadataSyncInterval <= 0 {
		return -1
	}
	return m.cfg.MetadataSyncInterval
}

// syncFile re-reads a persisted file's UFS status. A changed object (length,
// fingerprint or mtime) replaces the inode: the new inode has a new id, so
// blocks cached from the old version are freed and never served for it; a
// vanished object drops the inode. Files Alcove has not persisted are its
// own and are left alone.
func (m *Master) syncFile(ctx context.Context, n *node) (*node, error) {
	ino := n.inode
	if ino.Folder || ino.MountPoint || !ino.Completed || ino.PersistenceState != apiv1.PersistenceState_PERSISTED {
		return n, nil
	}
	fs, up, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return nil, err
	}
	st, err := fs.Stat(ctx, up)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		if _, err := m.apply(ctx, deleteEntry(ino.Id)); err != nil && !errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("drop %s, deleted in the UFS: %w", n.path, err)
		}
		return nil, fmt.Errorf("%s: deleted in the UFS: %w", n.path, meta.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("sync metadata of %s: %w", n.path, err)
	case st.Folder:
		if _, err := m.apply(ctx, deleteEntry(ino.Id)); err != nil && !errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("drop %s, now a directory in the UFS: %w", n.path, err)
		}
		return m.getOrLoad(ctx, n.path)
	case !changedInUFS(ino, st):
		return n, nil
	}
	st.Name = meta.Base(n.path)
	res, err := m.apply(ctx, replaceEntry(ino, m.inodeFromUFS(st)))
	if err != nil {
		return nil, fmt.Errorf("reload %s, changed in the UFS: %w", n.path, err)
	}
	return &node{path: n.path, inode: res.Inode, mount: n.mount}, nil
}

// replaceEntry journals new in place of old, only if old is still there.
func replaceEntry(old, new *apiv1.Inode) *apiv1.JournalEntry {
	e := createEntry(old.ParentId, new, true)
	e.GetCreateInode().ReplaceId = old.Id
	return e
}
