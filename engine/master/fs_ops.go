package master

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

func (m *Master) getStatus(ctx context.Context, req *apiv1.GetStatusRequest) (*apiv1.FileInfo, error) {
	p, err := cleanPath("get status", req.GetPath())
	if err != nil {
		return nil, err
	}
	var reqMs *int64
	switch {
	case req.GetSyncUfs():
		always := int64(0)
		reqMs = &always
	case req.SyncIntervalMs != nil:
		reqMs = req.SyncIntervalMs
	}
	n, err := m.getOrLoadSync(ctx, p, reqMs)
	if err != nil {
		return nil, err
	}
	if !n.inode.Folder && (req.GetSyncUfs() || m.synced.due(n.inode.Id, m.syncInterval(req.SyncIntervalMs, n.mount), m.now())) {
		if n, err = m.syncFile(ctx, n); err != nil {
			return nil, err
		}
		m.synced.mark(m.now(), n.inode.Id)
	}
	return m.fileInfoAfterRegistration(ctx, n)
}

// fileInfoAfterRegistration describes n; a file whose only copies are
// cached (never persisted) and seem lost right after this master took over
// is described once its blocks are registered again, or when workers had
// their time to register (the registry is not journaled: a new leader
// learns block locations only from registering workers).
func (m *Master) fileInfoAfterRegistration(ctx context.Context, n *node) (*apiv1.FileInfo, error) {
	for {
		added := m.reg.blockAdded()
		fi := m.fileInfo(n)
		grace, end := m.inRegistrationGrace()
		if fi.PersistenceState != apiv1.PersistenceState_LOST || !grace {
			return fi, nil
		}
		t := time.NewTimer(time.Until(end))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("get status %s: waiting for workers to register: %w", n.path, ctx.Err())
		case <-added:
		case <-t.C:
		}
		t.Stop()
	}
}

func (m *Master) listStatus(ctx context.Context, req *apiv1.ListStatusRequest) ([]*apiv1.FileInfo, error) {
	p, err := cleanPath("list", req.GetPath())
	if err != nil {
		return nil, err
	}
	n, err := m.getOrLoad(ctx, p)
	if err != nil {
		return nil, err
	}
	if !n.inode.Folder {
		return []*apiv1.FileInfo{m.fileInfo(n)}, nil
	}
	var out []*apiv1.FileInfo
	queue := []*node{n}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		sync := req.GetSyncUfs() || m.synced.due(dir.inode.Id, m.syncInterval(req.SyncIntervalMs, dir.mount), m.now())
		kids, err := m.listChildren(ctx, dir, sync)
		if err != nil {
			return nil, err
		}
		for _, k := range kids {
			out = append(out, m.fileInfo(k))
			if req.GetRecursive() && k.inode.Folder {
				queue = append(queue, k)
			}
		}
	}
	return out, nil
}

// parentDir resolves the parent of p, creating missing directories when
// recursive (with req's attributes).
func (m *Master) parentDir(ctx context.Context, p string, recursive bool, mk *apiv1.CreateDirectoryRequest) (*node, error) {
	pp := meta.Parent(p)
	pn, err := m.getOrLoad(ctx, pp)
	if errors.Is(err, meta.ErrNotFound) && recursive {
		pn, err = m.mkdirs(ctx, pp, mk)
	}
	if errors.Is(err, meta.ErrNotFound) {
		return nil, fmt.Errorf("parent %s of %s: %w (create it, or ask for recursive)", pp, p, meta.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if !pn.inode.Folder {
		return nil, fmt.Errorf("parent %s of %s: %w", pp, p, meta.ErrNotDirectory)
	}
	return pn, nil
}

// mkdirs creates every missing directory of p.
func (m *Master) mkdirs(ctx context.Context, p string, mk *apiv1.CreateDirectoryRequest) (*node, error) {
	cur, err := m.getOrLoad(ctx, "/")
	if err != nil {
		return nil, err
	}
	for _, c := range meta.Components(p) {
		next := meta.Join(cur.path, c)
		n, err := m.getOrLoad(ctx, next)
		if errors.Is(err, meta.ErrNotFound) {
			n, err = m.mkdirOne(ctx, cur, c, mk, false)
			if errors.Is(err, meta.ErrAlreadyExists) {
				n, err = m.getOrLoad(ctx, next)
			}
		}
		if err != nil {
			return nil, err
		}
		if !n.inode.Folder {
			return nil, fmt.Errorf("create %s: %s: %w", p, next, meta.ErrNotDirectory)
		}
		cur = n
	}
	return cur, nil
}

// mkdirOne creates one directory; call says it is the directory the client
// asked for (its entry carries the call's request id), not a parent.
func (m *Master) mkdirOne(ctx context.Context, parent *node, name string, req *apiv1.CreateDirectoryRequest, call bool) (*node, error) {
	p := meta.Join(parent.path, name)
	n := &node{path: p, mount: parent.mount}
	if err := writable(n); err != nil {
		return nil, err
	}
	mode := req.GetMode() & 0o7777
	if mode == 0 && !req.GetExactMode() {
		mode = 0o755
	}
	ino := &apiv1.Inode{Name: name, Folder: true, Mode: mode, Owner: req.GetOwner(), Group: req.GetGroup(),
		Completed: true, ChildrenLoaded: true, WriteType: req.GetWriteType(),
		PersistenceState: apiv1.PersistenceState_NOT_PERSISTED}
	if meta.WritesUfsSync(req.GetWriteType()) {
		fs, up, err := m.ufsOf(parent.mount, p)
		if err != nil {
			return nil, err
		}
		if err := fs.Mkdirs(ctx, up, mode); err != nil {
			return nil, fmt.Errorf("create directory %s in the UFS: %w", p, err)
		}
		ino.PersistenceState = apiv1.PersistenceState_PERSISTED
	}
	apply := m.apply
	if call {
		apply = m.applyCall
	}
	res, err := apply(ctx, createEntry(parent.inode.Id, ino, false))
	if err != nil {
		return nil, fmt.Errorf("create directory %s: %w", p, err)
	}
	n.inode = res.Inode
	return n, nil
}

func (m *Master) createDirectory(ctx context.Context, req *apiv1.CreateDirectoryRequest) (*apiv1.FileInfo, error) {
	p, err := cleanPath("create directory", req.GetPath())
	if err != nil {
		return nil, err
	}
	if _, ok := apiv1.WriteType_name[int32(req.GetWriteType())]; !ok {
		return nil, fmt.Errorf("%w: create directory %s: write type %d", meta.ErrInvalidArgument, p, req.GetWriteType())
	}
	n, err := m.getOrLoad(ctx, p)
	switch {
	case err == nil && n.inode.Folder && req.GetAllowExists():
		return m.fileInfo(n), nil
	case err == nil:
		return nil, fmt.Errorf("create directory %s: %w", p, meta.ErrAlreadyExists)
	case !errors.Is(err, meta.ErrNotFound):
		return nil, err
	}
	pn, err := m.parentDir(ctx, p, req.GetRecursive(), req)
	if err != nil {
		return nil, fmt.Errorf("create directory %s: %w", p, err)
	}
	n, err = m.mkdirOne(ctx, pn, meta.Base(p), req, true)
	if errors.Is(err, meta.ErrAlreadyExists) && req.GetAllowExists() {
		if n, err = m.getOrLoad(ctx, p); err == nil && !n.inode.Folder {
			err = fmt.Errorf("create directory %s: %w", p, meta.ErrAlreadyExists)
		}
	}
	if err != nil {
		return nil, err
	}
	return m.fileInfo(n), nil
}

func (m *Master) createFile(ctx context.Context, req *apiv1.CreateFileRequest) (*apiv1.FileInfo, error) {
	p, err := cleanPath("create file", req.GetPath())
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, fmt.Errorf("create file /: %w", meta.ErrIsDirectory)
	}
	bs := req.GetBlockSizeBytes()
	if bs == 0 {
		bs = m.cfg.DefaultBlockSize
	}
	if err := meta.ValidateBlockSize(bs); err != nil {
		return nil, fmt.Errorf("create file %s: %w", p, err)
	}
	wt := req.GetWriteType()
	if wt == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		wt = meta.DefaultWriteType
	}
	if _, ok := apiv1.WriteType_name[int32(wt)]; !ok {
		return nil, fmt.Errorf("%w: create file %s: write type %d", meta.ErrInvalidArgument, p, wt)
	}
	if req.GetTtlMs() < 0 || req.GetReplicationDurable() < 0 {
		return nil, fmt.Errorf("%w: create file %s: negative ttl or replication", meta.ErrInvalidArgument, p)
	}
	if _, ok := apiv1.TtlAction_name[int32(req.GetTtlAction())]; !ok {
		return nil, fmt.Errorf("%w: create file %s: ttl action %d", meta.ErrInvalidArgument, p, req.GetTtlAction())
	}
	mk := &apiv1.CreateDirectoryRequest{Owner: req.GetOwner(), Group: req.GetGroup(), WriteType: wt}
	pn, err := m.parentDir(ctx, p, req.GetRecursive(), mk)
	if err != nil {
		return nil, fmt.Errorf("create file %s: %w", p, err)
	}
	if err := writable(pn); err != nil {
		return nil, fmt.Errorf("create file: %w", err)
	}
	replace := false
	ex, err := m.getOrLoad(ctx, p)
	switch {
	case err == nil && ex.inode.Folder:
		return nil, fmt.Errorf("create file %s: %w: it is a directory", p, meta.ErrAlreadyExists)
	case err == nil && !req.GetOverwrite():
		return nil, fmt.Errorf("create file %s: %w", p, meta.ErrAlreadyExists)
	case err == nil:
		replace = true
		nodes, unlock, err := m.lockPaths(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("overwrite %s: %w", p, err)
		}
		defer unlock()
		if ex = nodes[0]; ex != nil && ex.inode.Folder {
			return nil, fmt.Errorf("create file %s: %w: it is a directory", p, meta.ErrAlreadyExists)
		}
		if ex != nil && ex.inode.PersistenceState == apiv1.PersistenceState_PERSISTED {
			// The old UFS copy must not come back if the new file is never persisted.
			if err := m.deleteUFS(ctx, ex, false); err != nil {
				return nil, fmt.Errorf("overwrite %s: %w", p, err)
			}
		}
	case !errors.Is(err, meta.ErrNotFound):
		return nil, err
	}
	mode := req.GetMode() & 0o7777
	if mode == 0 && !req.GetExactMode() {
		mode = 0o644
	}
	ttlAction := req.GetTtlAction()
	if req.GetTtlMs() > 0 && ttlAction == apiv1.TtlAction_TTL_ACTION_UNSPECIFIED {
		ttlAction = apiv1.TtlAction_TTL_DELETE
	}
	ino := &apiv1.Inode{
		Name: meta.Base(p), BlockSizeBytes: bs, Mode: mode, Owner: req.GetOwner(), Group: req.GetGroup(),
		TtlMs: req.GetTtlMs(), TtlAction: ttlAction, ReplicationDurable: req.GetReplicationDurable(),
		WriteType: wt, PersistenceState: apiv1.PersistenceState_NOT_PERSISTED,
	}
	res, err := m.applyCall(ctx, createEntry(pn.inode.Id, ino, replace))
	if err != nil {
		return nil, fmt.Errorf("create file %s: %w", p, err)
	}
	return m.fileInfo(&node{path: p, inode: res.Inode, mount: pn.mount}), nil
}

func (m *Master) completeFile(ctx context.Context, req *apiv1.CompleteFileRequest) (*apiv1.FileInfo, error) {
	p, err := cleanPath("complete file", req.GetPath())
	if err != nil {
		return nil, err
	}
	n, err := m.lookup(p)
	if err != nil {
		return nil, fmt.Errorf("complete file: %w", err)
	}
	ino := n.inode
	switch {
	case ino.Folder:
		return nil, fmt.Errorf("complete file %s: %w", p, meta.ErrIsDirectory)
	case req.GetFileId() != ino.Id:
		return nil, fmt.Errorf("%w: complete file %s: file id %d does not match the file there (id %d)", meta.ErrFailedPrecondition, p, req.GetFileId(), ino.Id)
	case ino.BlockSizeBytes <= 0:
		return nil, fmt.Errorf("%w: complete file %s: not a regular file (a symbolic link?)", meta.ErrFailedPrecondition, p)
	case req.GetLength() < 0 || meta.BlockCount(req.GetLength(), ino.BlockSizeBytes) > meta.MaxBlocksPerFile:
		return nil, fmt.Errorf("%w: complete file %s: length %d", meta.ErrInvalidArgument, p, req.GetLength())
	}
	blocks := meta.BlockCount(req.GetLength(), ino.BlockSizeBytes)
	if err := meta.ValidateHoles(req.GetHoles(), blocks); err != nil {
		return nil, fmt.Errorf("complete file %s: %w", p, err)
	}
	state := apiv1.PersistenceState_NOT_PERSISTED
	mtime, fingerprint := req.GetUfsMtimeMs(), req.GetUfsFingerprint()
	switch {
	case req.GetPersisted():
		state = apiv1.PersistenceState_PERSISTED
	case ino.WriteType == apiv1.WriteType_ASYNC_THROUGH && blocks == meta.HoleBlocks(req.GetHoles()) && !ino.Completed:
		// Nothing is cached for a worker to persist (an empty file, or
		// one of holes only): write it here, under the lock that orders
		// it with deletes and renames.
		nodes, unlock, err := m.lockPaths(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("complete file %s: %w", p, err)
		}
		defer unlock()
		if nodes[0] == nil || nodes[0].inode.Id != ino.Id {
			return nil, fmt.Errorf("%w: complete file %s: it was deleted or replaced meanwhile", meta.ErrNotFound, p)
		}
		fs, up, err := m.ufsOf(n.mount, p)
		if err != nil {
			return nil, err
		}
		w, err := fs.Create(ctx, up, ino.Mode)
		if err != nil {
			return nil, fmt.Errorf("persist empty file %s: %w", p, err)
		}
		if err := ufs.Skip(w, req.GetLength()); err != nil {
			w.Abort()
			return nil, fmt.Errorf("persist empty file %s: %w", p, err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("persist empty file %s: %w", p, err)
		}
		if st, err := fs.Stat(ctx, up); err == nil {
			mtime, fingerprint = st.ModTime.UnixMilli(), st.Fingerprint
		}
		state = apiv1.PersistenceState_PERSISTED
	case ino.WriteType == apiv1.WriteType_ASYNC_THROUGH:
		state = apiv1.PersistenceState_TO_BE_PERSISTED
	}
	res, err := m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CompleteFile{CompleteFile: &apiv1.CompleteFileEntry{
		Id: ino.Id, Length: req.GetLength(), PersistenceState: state, UfsMtimeMs: mtime, UfsFingerprint: fingerprint, Holes: req.GetHoles(),
	}}})
	if err != nil {
		return nil, fmt.Errorf("complete file %s: %w", p, err)
	}
	n.inode = res.Inode
	return m.fileInfo(n), nil
}

// deleteUFS removes n's UFS copy.
func (m *Master) deleteUFS(ctx context.Context, n *node, recursive bool) error {
	fs, up, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return err
	}
	if err := fs.Delete(ctx, up, recursive); err != nil {
		return fmt.Errorf("delete %s in the UFS: %w", n.path, err)
	}
	return nil
}

// mountsUnder returns the mount points strictly under p.
func (m *Master) mountsUnder(p string) ([]string, error) {
	var out []string
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := mounts(tx)
		for _, mt := range all {
			if mt.AlcovePath != p && meta.HasPrefix(mt.AlcovePath, p) {
				out = append(out, mt.AlcovePath)
			}
		}
		return err
	})
	return out, err
}

func (m *Master) delete(ctx context.Context, req *apiv1.DeleteRequest) error {
	p, err := cleanPath("delete", req.GetPath())
	if err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w: cannot delete the root", meta.ErrFailedPrecondition)
	}
	n, err := m.getOrLoad(ctx, p)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if n.inode.MountPoint {
		return fmt.Errorf("%w: %s is a mount point: unmount it instead", meta.ErrFailedPrecondition, p)
	}
	if under, err := m.mountsUnder(p); err != nil || len(under) > 0 {
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s contains mount point %s: unmount it first", meta.ErrFailedPrecondition, p, under[0])
	}
	persisted := n.inode.PersistenceState == apiv1.PersistenceState_PERSISTED
	if n.inode.Folder && !req.GetRecursive() {
		if persisted && !n.inode.ChildrenLoaded && !req.GetAlcoveOnly() {
			if err := m.syncChildren(ctx, n, false); err != nil {
				return err
			}
		}
		var nonEmpty bool
		if err := m.store.View(func(tx *bbolt.Tx) error { nonEmpty = hasChildren(tx, n.inode.Id); return nil }); err != nil {
			return err
		}
		if nonEmpty {
			return fmt.Errorf("delete %s: %w (delete recursively)", p, meta.ErrDirectoryNotEmpty)
		}
	}
	// Decide on the UFS under the lock, from the inode as it is now: a
	// persist committing meanwhile may just have made it PERSISTED.
	nodes, unlock, err := m.lockPaths(ctx, p)
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	defer unlock()
	if n = nodes[0]; n == nil {
		return fmt.Errorf("delete: %s: %w", p, meta.ErrNotFound)
	}
	if n.inode.MountPoint {
		return fmt.Errorf("%w: %s is a mount point: unmount it instead", meta.ErrFailedPrecondition, p)
	}
	session := req.GetOrphanSession()
	if session != "" && n.inode.Folder {
		session = "" // directories keep no data: an open one needs no orphan
	}
	var orphanURI string
	if !req.GetAlcoveOnly() && n.inode.PersistenceState == apiv1.PersistenceState_PERSISTED {
		if err := writable(n); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if session != "" {
			// Still open: its UFS copy moves aside until it is released.
			if orphanURI, err = m.moveAside(ctx, n); err != nil {
				return err
			}
		} else if err := m.deleteUFS(ctx, n, req.GetRecursive()); err != nil {
			// Non-recursive: the UFS refuses a directory that is not empty there.
			return err
		}
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{
		Id: n.inode.Id, Recursive: req.GetRecursive(), OrphanSession: session, OrphanUfsUri: orphanURI,
		ParentId: n.inode.ParentId, Name: n.inode.Name,
	}}})
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	if req.GetAlcoveOnly() && n.inode.PersistenceState == apiv1.PersistenceState_PERSISTED {
		// The UFS copy stays: the parent's listing must be read again for it
		// to load back on its next access.
		_, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetChildrenLoaded{
			SetChildrenLoaded: &apiv1.SetChildrenLoadedEntry{Id: n.inode.ParentId, Loaded: false}}})
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("delete %s: mark its directory for reloading: %w", p, err)
		}
	}
	klog.FromContext(ctx).V(2).Info("Deleted", "path", p, "alcoveOnly", req.GetAlcoveOnly())
	return nil
}

func (m *Master) rename(ctx context.Context, req *apiv1.RenameRequest) error {
	src, err := cleanPath("rename", req.GetSrc())
	if err != nil {
		return err
	}
	dst, err := cleanPath("rename", req.GetDst())
	if err != nil {
		return err
	}
	if src == "/" || dst == "/" {
		return fmt.Errorf("%w: cannot rename the root or onto it", meta.ErrInvalidArgument)
	}
	sn, err := m.getOrLoad(ctx, src)
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	if src == dst {
		return nil
	}
	if meta.HasPrefix(dst, src) {
		return fmt.Errorf("%w: cannot move %s into itself (%s)", meta.ErrInvalidArgument, src, dst)
	}
	if sn.inode.MountPoint {
		return fmt.Errorf("%w: %s is a mount point", meta.ErrFailedPrecondition, src)
	}
	dp, err := m.parentDir(ctx, dst, false, nil)
	if err != nil {
		return fmt.Errorf("rename %s: %w", src, err)
	}
	dstMount := dp.mount // a new name under dp is served by dp's mount
	if dstMount.GetAlcovePath() != sn.mount.GetAlcovePath() {
		return fmt.Errorf("%w: cannot rename %s to %s across mounts (%s, %s)", meta.ErrInvalidArgument, src, dst, sn.mount.GetAlcovePath(), dstMount.GetAlcovePath())
	}
	if err := writable(sn); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	// Load dst's metadata from the UFS if it is only there, so it is replaced
	// (or refused) rather than shadowed.
	if _, err := m.getOrLoad(ctx, dst); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("rename %s: %w", src, err)
	}
	// Decide on the UFS under the lock, from the inodes as they are now.
	nodes, unlock, err := m.lockPaths(ctx, src, dst)
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", src, dst, err)
	}
	defer unlock()
	sn, dn := nodes[0], nodes[1]
	switch {
	case sn == nil:
		return fmt.Errorf("rename: %s: %w", src, meta.ErrNotFound)
	case sn.inode.MountPoint:
		return fmt.Errorf("%w: %s is a mount point", meta.ErrFailedPrecondition, src)
	case dn != nil && dn.inode.MountPoint:
		return fmt.Errorf("%w: %s is a mount point", meta.ErrFailedPrecondition, dst)
	case dn != nil && !req.GetOverwrite():
		return fmt.Errorf("rename %s to %s: %w", src, dst, meta.ErrAlreadyExists)
	}
	if dn != nil {
		if err := m.checkReplace(sn, dn); err != nil {
			return err
		}
	}
	// dst's parent is read-locked (an ancestor on dst's chain): it is the
	// directory checked above unless it was replaced before the lock.
	if cur, err := m.lookup(meta.Parent(dst)); err != nil || cur.inode.Id != dp.inode.Id {
		return fmt.Errorf("rename %s to %s: %w: the destination directory changed meanwhile", src, dst, meta.ErrAborted)
	}
	if req.GetKeepIdentity() && (dn == nil || dn.inode.Folder || sn.inode.Folder) {
		return fmt.Errorf("%w: rename %s to %s keeping its identity: only a file takes over an existing file", meta.ErrInvalidArgument, src, dst)
	}
	session := req.GetOrphanSession()
	if dn == nil || dn.inode.Folder {
		session = ""
	}
	var orphanURI string
	if session != "" && dn.inode.PersistenceState == apiv1.PersistenceState_PERSISTED {
		// The replaced file is still open: its UFS copy moves aside
		// before the new one takes its place.
		if orphanURI, err = m.moveAside(ctx, dn); err != nil {
			return err
		}
		dn.inode.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	}
	srcPersisted := sn.inode.PersistenceState == apiv1.PersistenceState_PERSISTED
	if srcPersisted {
		fs, sup, err := m.ufsOf(sn.mount, src)
		if err != nil {
			return err
		}
		_, dup, err := m.ufsOf(dstMount, dst)
		if err != nil {
			return err
		}
		if err := fs.Rename(ctx, sup, dup); err != nil && !renamedBefore(ctx, fs, sup, dup, err) {
			return fmt.Errorf("rename %s to %s in the UFS: %w", src, dst, err)
		}
	} else if dn != nil && dn.inode.PersistenceState == apiv1.PersistenceState_PERSISTED {
		if err := m.deleteUFS(ctx, dn, dn.inode.Folder); err != nil {
			return err
		}
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_Rename{Rename: &apiv1.RenameEntry{
		Id: sn.inode.Id, NewParentId: dp.inode.Id, NewName: meta.Base(dst), Replace: dn != nil,
		KeepIdentity: req.GetKeepIdentity(), OrphanSession: session, OrphanUfsUri: orphanURI,
		ParentId: sn.inode.ParentId, Name: sn.inode.Name,
	}}})
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", src, dst, err)
	}
	m.cidx.renamed(src, dst)
	if srcPersisted {
		m.refreshMoved(ctx, &node{path: dst, inode: sn.inode, mount: dstMount})
	}
	return nil
}

// renamedBefore says whether a failed UFS rename of a retried call was done
// by its earlier attempt: that attempt renamed the UFS object, then its
// master lost leadership before journaling the rename.
func renamedBefore(ctx context.Context, fs ufs.UFS, src, dst string, err error) bool {
	if _, retried := ctx.Value(requestIDKey{}).(*apiv1.RequestId); !retried || !errors.Is(err, meta.ErrNotFound) {
		return false
	}
	if _, serr := fs.Stat(ctx, src); !errors.Is(serr, meta.ErrNotFound) {
		return false
	}
	_, derr := fs.Stat(ctx, dst)
	return derr == nil
}

// checkReplace says whether src may replace the existing dst (mayReplace).
func (m *Master) checkReplace(src, dst *node) error {
	err := m.store.View(func(tx *bbolt.Tx) error { return mayReplace(tx, src.inode, dst.inode) })
	if err != nil {
		return fmt.Errorf("rename %s onto %s: %w", src.path, dst.path, err)
	}
	return nil
}

func (m *Master) setAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) error {
	p, err := "", error(nil)
	if req.GetFileId() == 0 {
		if p, err = cleanPath("set attribute", req.GetPath()); err != nil {
			return err
		}
	}
	if req.TtlMs != nil && req.GetTtlMs() < 0 {
		return fmt.Errorf("%w: set attribute %s: negative ttl %d", meta.ErrInvalidArgument, p, req.GetTtlMs())
	}
	if req.TtlAction != nil {
		if _, ok := apiv1.TtlAction_name[int32(req.GetTtlAction())]; !ok {
			return fmt.Errorf("%w: set attribute %s: ttl action %d", meta.ErrInvalidArgument, p, req.GetTtlAction())
		}
	}
	if req.Mode != nil && req.GetMode()&^0o7777 != 0 {
		return fmt.Errorf("%w: set attribute %s: mode %o", meta.ErrInvalidArgument, p, req.GetMode())
	}
	var n *node
	if req.GetFileId() != 0 {
		n, err = m.nodeByID(req.GetFileId())
	} else {
		n, err = m.getOrLoad(ctx, p)
	}
	if err != nil {
		return fmt.Errorf("set attribute: %w", err)
	}
	if req.GetPersist() && !n.inode.Folder && !n.inode.Completed {
		return fmt.Errorf("%w: persist %s: the file is still being written", meta.ErrFailedPrecondition, p)
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{
		Id: n.inode.Id, Pinned: req.Pinned, TtlMs: req.TtlMs, TtlAction: req.TtlAction, Mode: req.Mode,
		Owner: req.Owner, Group: req.Group, MtimeMs: req.MtimeMs, AtimeMs: req.AtimeMs, Recursive: req.GetRecursive(), Persist: req.GetPersist(),
	}}})
	if err != nil {
		return fmt.Errorf("set attribute %s: %w", p, err)
	}
	return nil
}

// free drops the cached copies of persisted files under path.
func (m *Master) free(ctx context.Context, req *apiv1.FreeRequest) (int64, error) {
	p, err := cleanPath("free", req.GetPath())
	if err != nil {
		return 0, err
	}
	n, err := m.getOrLoad(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("free: %w", err)
	}
	var files []int64
	anyPinned := false
	err = m.store.View(func(tx *bbolt.Tx) error {
		if n.inode.Folder && !req.GetRecursive() && hasChildren(tx, n.inode.Id) {
			return fmt.Errorf("free %s: %w (free recursively)", p, meta.ErrDirectoryNotEmpty)
		}
		stack := []*apiv1.Inode{n.inode}
		for len(stack) > 0 {
			ino := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if ino.Folder {
				kids, err := children(tx, ino.Id)
				if err != nil {
					return err
				}
				stack = append(stack, kids...)
				continue
			}
			if ino.PersistenceState != apiv1.PersistenceState_PERSISTED {
				fp, _ := pathOf(tx, ino)
				return fmt.Errorf("%w: cannot free %s: not persisted: freeing would lose its data", meta.ErrFailedPrecondition, fp)
			}
			if ino.Pinned && !req.GetForce() {
				fp, _ := pathOf(tx, ino)
				return fmt.Errorf("%w: cannot free %s: it is pinned (unpin it or force)", meta.ErrFailedPrecondition, fp)
			}
			anyPinned = anyPinned || ino.Pinned
			files = append(files, ino.Id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if anyPinned || (req.GetForce() && n.inode.Pinned) {
		unpin := false
		if _, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{
			Id: n.inode.Id, Pinned: &unpin,
		}}}); err != nil {
			return 0, fmt.Errorf("unpin %s: %w", p, err)
		}
	}
	freed := m.reg.freeFiles(files)
	klog.FromContext(ctx).V(2).Info("Freed", "path", p, "files", len(files), "blocks", freed)
	return freed, nil
}
