package master

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// node is an inode resolved from a path, with the mount serving it.
type node struct {
	path  string
	inode *apiv1.Inode
	mount *apiv1.MountPointInfo
}

// cleanPath validates a request path.
func cleanPath(verb, p string) (string, error) {
	c, err := meta.CleanPath(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", verb, err)
	}
	return c, nil
}

// lookup resolves a path in the store only.
func (m *Master) lookup(p string) (*node, error) {
	var n *node
	err := m.store.View(func(tx *bbolt.Tx) error {
		ino, err := resolve(tx, p)
		if err != nil {
			return err
		}
		all, err := mounts(tx)
		if err != nil {
			return err
		}
		n = &node{path: p, inode: ino, mount: mountOf(all, p)}
		return nil
	})
	return n, err
}

// getOrLoad resolves a path, loading components missing from the store but
// present in the UFS (Alluxio's LoadMetadataType ONCE): each loaded inode is
// journaled as persisted and complete, with its length from the UFS.
//
// A directory whose listing was merged (ChildrenLoaded) is authoritative:
// a name missing from it is not looked up in the UFS again unless its sync
// interval (reqMs, else the mount's or master's) says the listing is due,
// as Alluxio's ONCE load type does. That saves a UFS call per new file and
// lets files be created under loaded directories while the UFS is down.
func (m *Master) getOrLoad(ctx context.Context, p string) (*node, error) {
	return m.getOrLoadSync(ctx, p, nil)
}

func (m *Master) getOrLoadSync(ctx context.Context, p string, reqMs *int64) (*node, error) {
	comps := meta.Components(p)
	for attempt := 0; attempt <= len(comps)+3; attempt++ {
		var inodes []*apiv1.Inode
		var all []*apiv1.MountPointInfo
		err := m.store.View(func(tx *bbolt.Tx) error {
			var err error
			if inodes, err = walk(tx, comps); err != nil {
				return err
			}
			all, err = mounts(tx)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(inodes) == len(comps)+1 {
			return &node{path: p, inode: inodes[len(comps)], mount: mountOf(all, p)}, nil
		}
		k := len(inodes) - 1
		parent := inodes[k]
		prefix := "/" + joinComps(comps[:k])
		if !parent.Folder {
			return nil, fmt.Errorf("%s: %s is a file: %w", p, prefix, meta.ErrNotDirectory)
		}
		cp := meta.Join(prefix, comps[k])
		mnt := mountOf(all, cp)
		if mnt == nil || ufs.IsTempName(comps[k]) {
			return nil, fmt.Errorf("%s: %w", p, meta.ErrNotFound)
		}
		if parent.ChildrenLoaded && !m.synced.due(parent.Id, m.syncInterval(reqMs, mnt), m.now()) {
			return nil, fmt.Errorf("%s: %w", p, meta.ErrNotFound)
		}
		fs, up, err := m.ufsOf(mnt, cp)
		if err != nil {
			return nil, err
		}
		st, err := fs.Stat(ctx, up)
		if errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", p, meta.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("load metadata of %s: %w", cp, err)
		}
		st.Name = comps[k]
		_, err = m.apply(ctx, createEntry(parent.Id, m.inodeFromUFS(st), false))
		if err != nil && !errors.Is(err, meta.ErrAlreadyExists) {
			return nil, fmt.Errorf("load metadata of %s: %w", cp, err)
		}
	}
	return nil, fmt.Errorf("load metadata of %s: concurrent changes: %w", p, meta.ErrAborted)
}

func createEntry(parent int64, ino *apiv1.Inode, replace bool) *apiv1.JournalEntry {
	return &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CreateInode{CreateInode: &apiv1.CreateInodeEntry{
		ParentId: parent, Inode: ino, Replace: replace,
	}}}
}

// inodeFromUFS describes a UFS object as a persisted, complete inode.
func (m *Master) inodeFromUFS(st ufs.Status) *apiv1.Inode {
	ino := &apiv1.Inode{
		Name: st.Name, Folder: st.Folder, Mode: st.Mode, Completed: true,
		PersistenceState: apiv1.PersistenceState_PERSISTED, UfsFingerprint: st.Fingerprint,
	}
	if !st.ModTime.IsZero() {
		ino.UfsMtimeMs = st.ModTime.UnixMilli()
		ino.LastModificationTimeMs = ino.UfsMtimeMs
	}
	if st.Target != "" {
		ino.SymlinkTarget, ino.Length, ino.Mode = st.Target, int64(len(st.Target)), 0o777
		return ino
	}
	if st.Folder {
		if ino.Mode == 0 {
			ino.Mode = 0o755
		}
	} else {
		ino.Length = st.Length
		ino.BlockSizeBytes = m.cfg.DefaultBlockSize
		if ino.Mode == 0 {
			ino.Mode = 0o644
		}
	}
	return ino
}

// ufsPath is the UFS URI of an Alcove path inside mount mnt.
func ufsPath(mnt *apiv1.MountPointInfo, p string) string {
	return ufs.JoinURI(mnt.GetUfsUri(), meta.RelPath(p, mnt.GetAlcovePath()))
}

// ufsOf returns the UFS serving p and p's path within it.
func (m *Master) ufsOf(mnt *apiv1.MountPointInfo, p string) (ufs.UFS, string, error) {
	fs, up, err := ufs.Resolve(ufsPath(mnt, p), m.mountProps(mnt))
	if err != nil {
		return nil, "", fmt.Errorf("resolve UFS of %s: %w", p, err)
	}
	return fs, up, nil
}

func writable(n *node) error {
	if n.mount.GetReadOnly() {
		return fmt.Errorf("%s is under read-only mount %s: %w", n.path, n.mount.GetAlcovePath(), meta.ErrPermission)
	}
	return nil
}

// syncChildren merges the UFS listing of a directory into the store. With
// full, it also drops persisted children gone from the UFS and reloads files
// whose UFS length or mtime changed; otherwise it only adds what is missing.
func (m *Master) syncChildren(ctx context.Context, n *node, full bool) error {
	fs, up, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return err
	}
	sts, err := fs.List(ctx, up)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("list %s in the UFS: %w", n.path, err)
	}
	var kids []*apiv1.Inode
	if err := m.store.View(func(tx *bbolt.Tx) error {
		kids, err = children(tx, n.inode.Id)
		return err
	}); err != nil {
		return err
	}
	have := make(map[string]*apiv1.Inode, len(kids))
	for _, k := range kids {
		have[k.Name] = k
	}
	inUFS := make(map[string]bool, len(sts))
	var drops, creates []*apiv1.JournalEntry
	for _, st := range sts {
		if meta.ValidName(st.Name) != nil || ufs.IsTempName(st.Name) {
			continue
		}
		inUFS[st.Name] = true
		ex := have[st.Name]
		switch {
		case ex == nil:
			creates = append(creates, createEntry(n.inode.Id, m.inodeFromUFS(st), false))
		case !full || ex.MountPoint || ex.PersistenceState != apiv1.PersistenceState_PERSISTED || !ex.Completed:
		case ex.Folder != st.Folder:
			drops = append(drops, deleteEntry(ex.Id))
			creates = append(creates, createEntry(n.inode.Id, m.inodeFromUFS(st), false))
		case !ex.Folder && changedInUFS(ex, st):
			creates = append(creates, replaceEntry(ex, m.inodeFromUFS(st)))
		}
	}
	if full {
		for name, ex := range have {
			if !inUFS[name] && !ex.MountPoint && ex.PersistenceState == apiv1.PersistenceState_PERSISTED {
				drops = append(drops, deleteEntry(ex.Id))
			}
		}
	}
	for _, batch := range [][]*apiv1.JournalEntry{drops, creates} {
		_, errs := m.applyAll(ctx, batch)
		for _, err := range errs {
			// Lost races with concurrent changes: those win.
			if err != nil && !errors.Is(err, meta.ErrAlreadyExists) && !errors.Is(err, meta.ErrNotFound) && !errors.Is(err, meta.ErrAborted) {
				return fmt.Errorf("merge UFS listing of %s: %w", n.path, err)
			}
		}
	}
	if !n.inode.ChildrenLoaded {
		_, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetChildrenLoaded{
			SetChildrenLoaded: &apiv1.SetChildrenLoadedEntry{Id: n.inode.Id, Loaded: true}}})
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("mark %s loaded: %w", n.path, err)
		}
	}
	return nil
}

// changedInUFS reports whether a UFS object differs from what a persisted
// inode recorded: its length, else its fingerprint (S3 ETag) when both
// sides have one, else its mtime.
func changedInUFS(ino *apiv1.Inode, st ufs.Status) bool {
	switch {
	case ino.Length != st.Length:
		return true
	case ino.UfsFingerprint != "" && st.Fingerprint != "":
		return ino.UfsFingerprint != st.Fingerprint
	}
	return ino.UfsMtimeMs != 0 && !st.ModTime.IsZero() && ino.UfsMtimeMs != st.ModTime.UnixMilli()
}

func deleteEntry(id int64) *apiv1.JournalEntry {
	return &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: id, Recursive: true}}}
}

// listChildren returns the nodes under a directory, loading them from the
// UFS first when they never were (or always, with sync).
func (m *Master) listChildren(ctx context.Context, n *node, sync bool) ([]*node, error) {
	loaded := sync || !n.inode.ChildrenLoaded
	if loaded {
		if err := m.syncChildren(ctx, n, sync); err != nil {
			return nil, err
		}
	}
	var out []*node
	err := m.store.View(func(tx *bbolt.Tx) error {
		kids, err := children(tx, n.inode.Id)
		if err != nil {
			return err
		}
		all, err := mounts(tx)
		if err != nil {
			return err
		}
		out = make([]*node, len(kids))
		for i, k := range kids {
			p := meta.Join(n.path, k.Name)
			mnt := n.mount
			if k.MountPoint {
				mnt = mountOf(all, p)
			}
			out[i] = &node{path: p, inode: k, mount: mnt}
		}
		return nil
	})
	if loaded && err == nil {
		// The listing just compared the directory and its files with the UFS.
		ids := []int64{n.inode.Id}
		for _, k := range out {
			if !k.inode.Folder {
				ids = append(ids, k.inode.Id)
			}
		}
		m.synced.mark(m.now(), ids...)
	}
	return out, err
}

// fileInfo describes a node, with block locations from the registry.
func (m *Master) fileInfo(n *node) *apiv1.FileInfo {
	ino := n.inode
	fi := &apiv1.FileInfo{
		FileId: ino.Id, Path: n.path, Name: meta.Base(n.path), Folder: ino.Folder, Length: ino.Length,
		BlockSizeBytes: ino.BlockSizeBytes, Mode: ino.Mode, Owner: ino.Owner, Group: ino.Group,
		CreationTimeMs: ino.CreationTimeMs, LastModificationTimeMs: ino.LastModificationTimeMs,
		Completed: ino.Completed, PersistenceState: ino.PersistenceState, Pinned: ino.Pinned,
		TtlMs: ino.TtlMs, TtlAction: ino.TtlAction, UfsPath: ufsPath(n.mount, n.path),
		MountPoint: ino.MountPoint, ReplicationDurable: ino.ReplicationDurable, WriteType: ino.WriteType,
		MountId: n.mount.GetMountId(), UfsFingerprint: ino.UfsFingerprint, Ino: inoOf(ino), SymlinkTarget: ino.SymlinkTarget, Nlink: 1,
		AccessTimeMs: ino.AccessTimeMs, ChangeTimeMs: ino.ChangeTimeMs, Orphan: isOrphan(ino),
	}
	if fi.AccessTimeMs == 0 {
		fi.AccessTimeMs = ino.LastModificationTimeMs
	}
	if fi.ChangeTimeMs == 0 {
		fi.ChangeTimeMs = ino.LastModificationTimeMs
	}
	switch {
	case ino.Folder:
		fi.Nlink = uint32(2 + ino.ChildDirs)
		return fi
	case isOrphan(ino):
		fi.Nlink = 0
		if ino.OrphanUfsUri != "" {
			fi.UfsPath = ino.OrphanUfsUri
		}
	case isSymlink(ino):
		fi.InAlcovePercentage = 100
		return fi
	}
	var ids []int64
	if ino.Completed {
		count := meta.BlockCount(ino.Length, ino.BlockSizeBytes)
		ids = make([]int64, 0, count-meta.HoleBlocks(ino.Holes))
		for i := range count {
			if !meta.IsHole(ino.Holes, i) {
				ids = append(ids, meta.BlockID(ino.Id, i))
			}
		}
		fi.Holes = ino.Holes
	} else {
		ids = m.reg.fileBlockIDs(ino.Id)
	}
	// Holes are never cached and never lost: they count as present.
	cached := meta.HoleBytes(ino.Holes, ino.Length, ino.BlockSizeBytes)
	missing := false
	fi.BlockIds = ids
	fi.FileBlockInfos = make([]*apiv1.FileBlockInfo, len(ids))
	for i, id := range ids {
		locs, length := m.reg.locations(id)
		idx := meta.BlockIndexOf(id)
		if ino.Completed {
			length = meta.BlockLength(ino.Length, ino.BlockSizeBytes, idx)
		}
		if len(locs) > 0 {
			cached += length
		} else {
			missing = true
		}
		fi.FileBlockInfos[i] = &apiv1.FileBlockInfo{
			BlockInfo: &apiv1.BlockInfo{BlockId: id, Length: length, Locations: locs},
			Offset:    idx * ino.BlockSizeBytes,
		}
	}
	switch {
	case ino.Length > 0:
		fi.InAlcovePercentage = int32(min(100, cached*100/ino.Length))
	case ino.Completed:
		fi.InAlcovePercentage = 100
	}
	if ino.Completed && missing && ino.PersistenceState != apiv1.PersistenceState_PERSISTED {
		// The cache held the only copy and some of it is gone.
		fi.PersistenceState = apiv1.PersistenceState_LOST
	}
	return fi
}
