package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// POSIX operations beyond Alluxio's: files by id (orphans too), symbolic
// links, orphans (files unlinked while open) and their release.

// maxSymlinkTarget is the longest symbolic link target (PATH_MAX - 1).
const maxSymlinkTarget = 4095

// nodeByID resolves a file by id wherever it is: at its path, or an
// orphan (shown at the path it had).
func (m *Master) nodeByID(id int64) (*node, error) {
	var n *node
	err := m.store.View(func(tx *bbolt.Tx) error {
		ino, err := getInode(tx, id)
		if err != nil {
			return err
		}
		if ino == nil {
			return fmt.Errorf("file %d: %w", id, meta.ErrNotFound)
		}
		all, err := mounts(tx)
		if err != nil {
			return err
		}
		p := ino.OrphanPath
		if !isOrphan(ino) {
			if p, err = pathOf(tx, ino); err != nil {
				return err
			}
		}
		n = &node{path: p, inode: ino, mount: mountOf(all, p)}
		return nil
	})
	return n, err
}

// getStatusReq answers GetStatus: by id when the request names one.
func (m *Master) getStatusReq(ctx context.Context, req *apiv1.GetStatusRequest) (*apiv1.FileInfo, error) {
	if req.GetFileId() == 0 {
		return m.getStatus(ctx, req)
	}
	n, err := m.nodeByID(req.GetFileId())
	if err != nil {
		return nil, fmt.Errorf("get status: %w", err)
	}
	return m.fileInfo(n), nil
}

// orphanTempPrefix names the temporary object an orphan's UFS copy is
// moved to, at the root of its mount (a ufs temporary: listings skip it).
const orphanTempPrefix = ufs.TempPrefix + "-orphan-"

// moveAside moves n's UFS copy to a fresh temporary object of its mount
// (n is losing its name while a client still reads it) and returns the
// object's URI. The caller holds n's lock.
func (m *Master) moveAside(ctx context.Context, n *node) (string, error) {
	fs, up, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return "", err
	}
	uri := ufs.JoinURI(n.mount.GetUfsUri(), fmt.Sprintf("%s%d-%016x", orphanTempPrefix, n.inode.Id, rand.Uint64()))
	_, tmp, err := ufs.Resolve(uri, m.mountProps(n.mount))
	if err != nil {
		return "", fmt.Errorf("move %s aside: %w", n.path, err)
	}
	if err := fs.Rename(ctx, up, tmp); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return "", nil // not in the UFS after all: nothing to keep
		}
		return "", fmt.Errorf("move %s aside in the UFS: %w", n.path, err)
	}
	return uri, nil
}

// releaseOrphans removes orphans of a session: the ones named, or all.
func (m *Master) releaseOrphans(ctx context.Context, req *apiv1.ReleaseOrphansRequest) (int32, error) {
	session := req.GetSession()
	if session == "" {
		return 0, fmt.Errorf("%w: release orphans: no session", meta.ErrInvalidArgument)
	}
	if err := validSession(session); err != nil {
		return 0, err
	}
	ids := req.GetFileIds()
	if len(ids) == 0 {
		prefix := orphanKey(session, 0)[:len(session)+1]
		err := m.store.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bOrphans).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				ids = append(ids, int64(journal.U64(k[len(prefix):])))
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	var released int32
	for _, id := range ids {
		ok, err := m.releaseOrphan(ctx, session, id)
		if err != nil {
			return released, err
		}
		if ok {
			released++
		}
	}
	return released, nil
}

// releaseOrphan removes orphan id of session and its UFS copy; false when
// it is gone already (a retried release).
func (m *Master) releaseOrphan(ctx context.Context, session string, id int64) (bool, error) {
	n, err := m.nodeByID(id)
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n.inode.OrphanSession != session {
		return false, fmt.Errorf("%w: release orphan %d: it is not an orphan of session %q", meta.ErrFailedPrecondition, id, session)
	}
	if uri := n.inode.OrphanUfsUri; uri != "" {
		fs, tmp, err := ufs.Resolve(uri, m.mountProps(n.mount))
		if err == nil {
			err = fs.Delete(ctx, tmp, false)
		}
		if err != nil {
			return false, fmt.Errorf("release orphan %d: remove its UFS copy %s: %w", id, tmp, err)
		}
	}
	_, err = m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: id}}})
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return false, fmt.Errorf("release orphan %d: %w", id, err)
	}
	klog.FromContext(ctx).V(2).Info("Orphan released", "fileID", id, "session", session)
	return true, nil
}

// createSymlink makes a symbolic link; with a write type that reaches the
// UFS, a UFS that stores links gets it too.
func (m *Master) createSymlink(ctx context.Context, req *apiv1.CreateSymlinkRequest) (*apiv1.FileInfo, error) {
	p, err := cleanPath("create symlink", req.GetPath())
	if err != nil {
		return nil, err
	}
	target := req.GetTarget()
	switch {
	case p == "/":
		return nil, fmt.Errorf("create symlink /: %w", meta.ErrAlreadyExists)
	case target == "" || strings.ContainsRune(target, 0):
		return nil, fmt.Errorf("%w: symlink %s: empty target or NUL in it", meta.ErrInvalidArgument, p)
	case len(target) > maxSymlinkTarget:
		return nil, fmt.Errorf("%w: symlink %s: target of %d bytes", meta.ErrNameTooLong, p, len(target))
	}
	wt := req.GetWriteType()
	if wt == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		wt = meta.DefaultWriteType
	}
	if _, ok := apiv1.WriteType_name[int32(wt)]; !ok {
		return nil, fmt.Errorf("%w: create symlink %s: write type %d", meta.ErrInvalidArgument, p, wt)
	}
	pn, err := m.parentDir(ctx, p, false, nil)
	if err != nil {
		return nil, fmt.Errorf("create symlink %s: %w", p, err)
	}
	if err := writable(pn); err != nil {
		return nil, fmt.Errorf("create symlink: %w", err)
	}
	// A name only the UFS has is loaded, and then exists.
	if _, err := m.getOrLoad(ctx, p); err == nil {
		return nil, fmt.Errorf("create symlink %s: %w", p, meta.ErrAlreadyExists)
	} else if !errors.Is(err, meta.ErrNotFound) {
		return nil, err
	}
	// The parent is read-locked: no delete or rename of it interleaves
	// with the UFS link and the journal entry.
	nodes, unlock, err := m.lockPaths(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("create symlink %s: %w", p, err)
	}
	defer unlock()
	if nodes[0] != nil {
		return nil, fmt.Errorf("create symlink %s: %w", p, meta.ErrAlreadyExists)
	}
	ino := &apiv1.Inode{
		Name: meta.Base(p), SymlinkTarget: target, Length: int64(len(target)), Mode: 0o777,
		Owner: req.GetOwner(), Group: req.GetGroup(), Completed: true, WriteType: wt,
		PersistenceState: apiv1.PersistenceState_NOT_PERSISTED,
	}
	fs, up, err := m.ufsOf(pn.mount, p)
	if err != nil {
		return nil, err
	}
	sl, inUFS := fs.(ufs.Symlinker)
	inUFS = inUFS && wt != apiv1.WriteType_MUST_CACHE
	if inUFS {
		if err := sl.Symlink(ctx, up, target); err != nil {
			return nil, fmt.Errorf("create symlink %s in the UFS: %w", p, err)
		}
		ino.PersistenceState = apiv1.PersistenceState_PERSISTED
	}
	res, err := m.applyCall(ctx, createEntry(pn.inode.Id, ino, false))
	if err != nil {
		if inUFS {
			_ = fs.Delete(context.WithoutCancel(ctx), up, false)
		}
		return nil, fmt.Errorf("create symlink %s: %w", p, err)
	}
	return m.fileInfo(&node{path: p, inode: res.Inode, mount: pn.mount}), nil
}
