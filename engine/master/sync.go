package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
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

// refreshMoved records the UFS fingerprints of the files a UFS rename just
// moved (n is the moved file or directory at its new path). A store whose
// rename is a copy (S3: copy then delete) may give the copy a new ETag — a
// multipart object's copy does — and a stale fingerprint would make every
// read of an uncached block refuse the object as changed, and the next sync
// drop its cache. Stores that do not check fingerprints are skipped. It
// costs one Stat for a file and one listing per directory of a moved tree
// (the rename itself copied every object). Failures are logged: the rename
// stands, and `fs ls -f` repairs what is left stale.
func (m *Master) refreshMoved(ctx context.Context, n *node) {
	fs, up, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return
	}
	if _, ok := fs.(ufs.MatchingOpener); !ok {
		return
	}
	var entries []*apiv1.JournalEntry
	if !n.inode.Folder {
		var st ufs.Status
		if st, err = fs.Stat(ctx, up); err == nil {
			entries = appendRefresh(entries, n.inode, st)
		}
	} else {
		entries, err = m.refreshTree(ctx, fs, n)
	}
	_, errs := m.applyAll(ctx, entries)
	for _, e := range errs {
		if err == nil {
			err = e
		}
	}
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		klog.FromContext(ctx).Error(err, "Record UFS fingerprints after a rename (fs ls -f repairs them)", "path", n.path)
	}
}

// refreshTree lists every directory of the tree at dir (in Alcove's
// namespace) in the UFS and returns the entries recording changed
// fingerprints of its persisted files.
func (m *Master) refreshTree(ctx context.Context, fs ufs.UFS, dir *node) ([]*apiv1.JournalEntry, error) {
	var entries []*apiv1.JournalEntry
	queue := []*node{dir}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		var kids []*apiv1.Inode
		if err := m.store.View(func(tx *bbolt.Tx) (err error) {
			kids, err = children(tx, d.inode.Id)
			return err
		}); err != nil {
			return entries, err
		}
		files := map[string]*apiv1.Inode{}
		for _, k := range kids {
			switch {
			case k.Folder && !k.MountPoint:
				queue = append(queue, &node{path: meta.Join(d.path, k.Name), inode: k, mount: d.mount})
			case !k.Folder && k.UfsFingerprint != "" && k.PersistenceState == apiv1.PersistenceState_PERSISTED:
				files[k.Name] = k
			}
		}
		if len(files) == 0 {
			continue
		}
		_, up, err := m.ufsOf(d.mount, d.path)
		if err != nil {
			return entries, err
		}
		sts, err := fs.List(ctx, up)
		if err != nil {
			return entries, err
		}
		for _, st := range sts {
			if ino := files[st.Name]; ino != nil {
				entries = appendRefresh(entries, ino, st)
			}
		}
	}
	return entries, nil
}

// appendRefresh adds an entry recording st's fingerprint for ino when the
// UFS reports another one for an object of the same length.
func appendRefresh(entries []*apiv1.JournalEntry, ino *apiv1.Inode, st ufs.Status) []*apiv1.JournalEntry {
	if ino.Folder || st.Folder || ino.UfsFingerprint == "" || st.Fingerprint == "" || st.Fingerprint == ino.UfsFingerprint || st.Length != ino.Length {
		return entries
	}
	return append(entries, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetPersistence{SetPersistence: &apiv1.SetPersistenceEntry{
		Id: ino.Id, State: apiv1.PersistenceState_PERSISTED, UfsMtimeMs: st.ModTime.UnixMilli(), UfsFingerprint: st.Fingerprint,
	}}})
}
