package master

// The journal entries that change the namespace: create, complete,
// delete, rename and attributes (applied through applyMutation).

import (
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// mayReplace is the one rule for a rename of src onto an existing dst, as
// rename(2) has it: a file replaces a file, a directory an empty directory,
// and a mount point is never replaced. The FSM applies it; the master's
// pre-check runs it too, so a refusal costs no journal entry.
func mayReplace(tx *bbolt.Tx, src, dst *apiv1.Inode) error {
	switch {
	case dst.MountPoint:
		return fmt.Errorf("%w: rename onto mount point %q", meta.ErrFailedPrecondition, dst.Name)
	case dst.Folder && !src.Folder:
		return fmt.Errorf("rename file onto %q: %w", dst.Name, meta.ErrIsDirectory)
	case !dst.Folder && src.Folder:
		return fmt.Errorf("rename directory onto %q: %w", dst.Name, meta.ErrNotDirectory)
	case dst.Folder && hasChildren(tx, dst.Id):
		return fmt.Errorf("rename onto %q: %w", dst.Name, meta.ErrDirectoryNotEmpty)
	}
	return nil
}

func applyCreate(tx *bbolt.Tx, c *apiv1.CreateInodeEntry, now int64) (any, error) {
	if c.GetInode() == nil {
		// An entry no master writes; refused, not a panic that every
		// replaying master would repeat.
		return nil, fmt.Errorf("%w: create entry without an inode", meta.ErrInvalidArgument)
	}
	in := proto.Clone(c.GetInode()).(*apiv1.Inode)
	parent, err := mustInode(tx, c.GetParentId())
	if err != nil {
		return nil, fmt.Errorf("create %q: parent: %w", in.GetName(), err)
	}
	if !parent.Folder {
		return nil, fmt.Errorf("create %q: parent %q: %w", in.Name, parent.Name, meta.ErrNotDirectory)
	}
	if err := meta.ValidName(in.Name); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	existing, err := child(tx, parent.Id, in.Name)
	if err != nil {
		return nil, err
	}
	if existing == nil && c.GetReplaceId() != 0 {
		return nil, fmt.Errorf("replace %q: inode %d: %w", in.Name, c.GetReplaceId(), meta.ErrNotFound)
	}
	if existing != nil {
		if !c.GetReplace() {
			return nil, fmt.Errorf("create %q: %w", in.Name, meta.ErrAlreadyExists)
		}
		if existing.Folder || in.Folder {
			return nil, fmt.Errorf("replace %q: only a file replaces a file: %w", in.Name, meta.ErrIsDirectory)
		}
		if c.GetReplaceId() != 0 && existing.Id != c.GetReplaceId() {
			return nil, fmt.Errorf("replace %q: %w: inode %d is there now, not %d", in.Name, meta.ErrAborted, existing.Id, c.GetReplaceId())
		}
	}
	if in.Id < 0 {
		return nil, fmt.Errorf("%w: create %q: negative inode id %d", meta.ErrInvalidArgument, in.Name, in.Id)
	}
	if in.Id != 0 {
		if other, err := getInode(tx, in.Id); err != nil || other != nil {
			return nil, fmt.Errorf("create %q: inode id %d: %w", in.Name, in.Id, meta.ErrAlreadyExists)
		}
	}
	var res applyResult
	if existing != nil {
		if res.Removed, err = removeSubtree(tx, existing); err != nil {
			return nil, err
		}
	}
	if in.Id == 0 {
		if in.Id, err = nextID(tx); err != nil {
			return nil, err
		}
	} else if in.Id >= counter(tx, kNextInode) {
		// A given id moves the counter past it: nextID never hands it out again.
		if err := setCounter(tx, kNextInode, in.Id+1); err != nil {
			return nil, err
		}
	}
	in.ParentId = parent.Id
	if in.CreationTimeMs == 0 {
		in.CreationTimeMs = now
	}
	if in.LastModificationTimeMs == 0 {
		in.LastModificationTimeMs = in.CreationTimeMs
	}
	if in.AccessTimeMs == 0 {
		in.AccessTimeMs = in.LastModificationTimeMs
	}
	if in.ChangeTimeMs == 0 {
		in.ChangeTimeMs = in.LastModificationTimeMs
	}
	in.OrphanSession, in.OrphanPath, in.OrphanUfsUri = "", "", ""
	if in.Folder {
		in.ChildDirs = 0 // a new directory is empty
	}
	if parent.Pinned {
		in.Pinned = true
	}
	if in.PersistenceState == apiv1.PersistenceState_PERSISTENCE_STATE_UNSPECIFIED {
		in.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	}
	if in.Folder {
		in.Completed = true
	}
	if err := putInode(tx, nil, in); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bEdges).Put(edgeKey(parent.Id, in.Name), idKey(in.Id)); err != nil {
		return nil, err
	}
	if err := touch(tx, parent.Id, now, dirCount(in, 1)); err != nil {
		return nil, err
	}
	if isSymlink(in) && in.PersistenceState == apiv1.PersistenceState_PERSISTED {
		// A link written to the UFS: its directories are there too, and a
		// delete of one of them must reach the UFS.
		if err := persistAncestors(tx, in); err != nil {
			return nil, err
		}
	}
	res.Inode = in
	return res, nil
}

// putFile stores a changed file and, once it is PERSISTED, marks its
// ancestors persisted too.
func putFile(tx *bbolt.Tx, old, ino *apiv1.Inode) (any, error) {
	if err := putInode(tx, old, ino); err != nil {
		return nil, err
	}
	if ino.PersistenceState == apiv1.PersistenceState_PERSISTED {
		if err := persistAncestors(tx, ino); err != nil {
			return nil, err
		}
	}
	return applyResult{Inode: ino}, nil
}

func persistAncestors(tx *bbolt.Tx, ino *apiv1.Inode) error {
	for id := ino.ParentId; id != 0; {
		p, err := mustInode(tx, id)
		if err != nil {
			return err
		}
		if p.PersistenceState != apiv1.PersistenceState_PERSISTED {
			old := proto.Clone(p).(*apiv1.Inode)
			p.PersistenceState = apiv1.PersistenceState_PERSISTED
			if err := putInode(tx, old, p); err != nil {
				return err
			}
		}
		id = p.ParentId
	}
	return nil
}

func applyComplete(tx *bbolt.Tx, c *apiv1.CompleteFileEntry, now int64) (any, error) {
	ino, err := mustInode(tx, c.GetId())
	if err != nil {
		return nil, fmt.Errorf("complete file: %w", err)
	}
	if ino.Folder {
		return nil, fmt.Errorf("complete %q: %w", ino.Name, meta.ErrIsDirectory)
	}
	if c.GetLength() < 0 {
		return nil, fmt.Errorf("%w: complete %q: negative length %d", meta.ErrInvalidArgument, ino.Name, c.GetLength())
	}
	if ino.BlockSizeBytes <= 0 {
		return nil, fmt.Errorf("%w: complete %q: not a regular file (no block size)", meta.ErrFailedPrecondition, ino.Name)
	}
	if err := meta.ValidateHoles(c.GetHoles(), meta.BlockCount(c.GetLength(), ino.BlockSizeBytes)); err != nil {
		return nil, fmt.Errorf("complete %q: %w", ino.Name, err)
	}
	if ino.Completed {
		if ino.Length == c.GetLength() {
			return applyResult{Inode: ino}, nil // a retried completion
		}
		return nil, fmt.Errorf("%w: complete %q: already completed with length %d", meta.ErrFailedPrecondition, ino.Name, ino.Length)
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.Length = c.GetLength()
	ino.Completed = true
	ino.PersistenceState = c.GetPersistenceState()
	if ino.PersistenceState == apiv1.PersistenceState_PERSISTENCE_STATE_UNSPECIFIED {
		ino.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	}
	ino.UfsMtimeMs = c.GetUfsMtimeMs()
	ino.UfsFingerprint = c.GetUfsFingerprint()
	ino.Holes = meta.CloneHoles(c.GetHoles())
	ino.LastModificationTimeMs = now
	changed(ino, now)
	return putFile(tx, old, ino)
}

// checkPlace fails when an entry names where its inode was found (parent
// and name) and the inode is no longer there: it was renamed after the
// caller resolved its path.
func checkPlace(ino *apiv1.Inode, parent int64, name string) error {
	if name != "" && (ino.ParentId != parent || ino.Name != name) {
		return fmt.Errorf("%q was moved: %w", name, meta.ErrNotFound)
	}
	return nil
}

func applyDelete(tx *bbolt.Tx, d *apiv1.DeleteInodeEntry, now int64) (any, error) {
	ino, err := mustInode(tx, d.GetId())
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if err := checkPlace(ino, d.GetParentId(), d.GetName()); err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if isOrphan(ino) {
		// Released: it has no name to remove.
		if d.GetOrphanSession() != "" {
			return nil, fmt.Errorf("%w: inode %d is an orphan already", meta.ErrFailedPrecondition, ino.Id)
		}
		if err := removeInode(tx, ino); err != nil {
			return nil, err
		}
		return applyResult{Inode: ino, Removed: []int64{ino.Id}}, nil
	}
	switch {
	case ino.Id == RootID:
		return nil, fmt.Errorf("%w: cannot delete the root", meta.ErrFailedPrecondition)
	case ino.MountPoint:
		return nil, fmt.Errorf("%w: %q is a mount point: unmount it instead", meta.ErrFailedPrecondition, ino.Name)
	case ino.Folder && !d.GetRecursive() && hasChildren(tx, ino.Id):
		return nil, fmt.Errorf("delete %q: %w (delete recursively)", ino.Name, meta.ErrDirectoryNotEmpty)
	}
	if d.GetOrphanSession() != "" && ino.Folder {
		return nil, fmt.Errorf("%w: only files become orphans (%q is a directory)", meta.ErrInvalidArgument, ino.Name)
	}
	if err := validSession(d.GetOrphanSession()); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bEdges).Delete(edgeKey(ino.ParentId, ino.Name)); err != nil {
		return nil, err
	}
	if err := touch(tx, ino.ParentId, now, dirCount(ino, -1)); err != nil {
		return nil, err
	}
	if d.GetOrphanSession() != "" {
		if err := orphan(tx, ino, d.GetOrphanSession(), d.GetOrphanUfsUri(), now); err != nil {
			return nil, err
		}
		return applyResult{Inode: ino}, nil
	}
	removed, err := removeSubtree(tx, ino)
	if err != nil {
		return nil, err
	}
	return applyResult{Inode: ino, Removed: removed}, nil
}

// validSession rejects orphan session names the orphan index cannot key.
func validSession(s string) error {
	if strings.ContainsRune(s, 0) || len(s) > 1024 {
		return fmt.Errorf("%w: orphan session %q (at most 1024 bytes, no NUL)", meta.ErrInvalidArgument, s)
	}
	return nil
}

// orphan keeps file ino, whose name is gone already, as an orphan of
// session: no parent, its blocks kept, never persisted.
func orphan(tx *bbolt.Tx, ino *apiv1.Inode, session, ufsURI string, now int64) error {
	p, err := pathOf(tx, ino)
	if err != nil {
		return err
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.OrphanSession, ino.OrphanPath, ino.OrphanUfsUri = session, p, ufsURI
	ino.ParentId = 0
	if ino.PersistenceState == apiv1.PersistenceState_PERSISTED && ufsURI == "" {
		// Its UFS copy is gone with the name: the cache holds the only copy.
		ino.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	}
	if ino.PersistenceState == apiv1.PersistenceState_TO_BE_PERSISTED {
		ino.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	}
	changed(ino, now)
	return putInode(tx, old, ino)
}

func applyRename(tx *bbolt.Tx, r *apiv1.RenameEntry, now int64) (any, error) {
	ino, err := mustInode(tx, r.GetId())
	if err != nil {
		return nil, fmt.Errorf("rename: %w", err)
	}
	if err := checkPlace(ino, r.GetParentId(), r.GetName()); err != nil {
		return nil, fmt.Errorf("rename: %w", err)
	}
	if ino.Id == RootID {
		return nil, fmt.Errorf("%w: cannot rename the root", meta.ErrInvalidArgument)
	}
	if ino.MountPoint {
		return nil, fmt.Errorf("%w: %q is a mount point", meta.ErrFailedPrecondition, ino.Name)
	}
	np, err := mustInode(tx, r.GetNewParentId())
	if err != nil {
		return nil, fmt.Errorf("rename %q: destination parent: %w", ino.Name, err)
	}
	if !np.Folder {
		return nil, fmt.Errorf("rename %q: destination parent %q: %w", ino.Name, np.Name, meta.ErrNotDirectory)
	}
	if err := meta.ValidName(r.GetNewName()); err != nil {
		return nil, fmt.Errorf("rename %q: %w", ino.Name, err)
	}
	for id := np.Id; id != 0; {
		if id == ino.Id {
			return nil, fmt.Errorf("%w: cannot move %q into itself", meta.ErrInvalidArgument, ino.Name)
		}
		a, err := mustInode(tx, id)
		if err != nil {
			return nil, err
		}
		id = a.ParentId
	}
	if ino.Folder {
		src, err := pathOf(tx, ino)
		if err != nil {
			return nil, err
		}
		all, err := mounts(tx)
		if err != nil {
			return nil, err
		}
		for _, m := range all {
			if meta.HasPrefix(m.AlcovePath, src) {
				return nil, fmt.Errorf("%w: %s contains mount point %s", meta.ErrFailedPrecondition, src, m.AlcovePath)
			}
		}
	}
	existing, err := child(tx, np.Id, r.GetNewName())
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.Id == ino.Id {
		return applyResult{Inode: ino}, nil
	}
	if err := validSession(r.GetOrphanSession()); err != nil {
		return nil, err
	}
	if r.GetKeepIdentity() && (existing == nil || existing.Folder || ino.Folder) {
		return nil, fmt.Errorf("%w: rename %q keeping the identity of %q: only a file takes over a file", meta.ErrInvalidArgument, ino.Name, r.GetNewName())
	}
	if existing != nil {
		switch {
		case !r.GetReplace():
			return nil, fmt.Errorf("rename to %q: %w", r.GetNewName(), meta.ErrAlreadyExists)
		}
		if err := mayReplace(tx, ino, existing); err != nil {
			return nil, err
		}
	}
	var res applyResult
	old := proto.Clone(ino).(*apiv1.Inode)
	if existing != nil {
		if r.GetKeepIdentity() {
			takeIdentity(ino, existing)
		}
		if r.GetOrphanSession() != "" && !existing.Folder {
			err = orphan(tx, existing, r.GetOrphanSession(), r.GetOrphanUfsUri(), now)
		} else {
			res.Removed, err = removeSubtree(tx, existing)
		}
		if err != nil {
			return nil, err
		}
	}
	edges := tx.Bucket(bEdges)
	if err := edges.Delete(edgeKey(ino.ParentId, ino.Name)); err != nil {
		return nil, err
	}
	if err := edges.Put(edgeKey(np.Id, r.GetNewName()), idKey(ino.Id)); err != nil {
		return nil, err
	}
	ino.ParentId, ino.Name = np.Id, r.GetNewName()
	changed(ino, now)
	if err := putInode(tx, old, ino); err != nil {
		return nil, err
	}
	if err := touch(tx, old.ParentId, now, dirCount(ino, -1)); err != nil {
		return nil, err
	}
	if err := touch(tx, np.Id, now, dirCount(ino, 1)+dirCount(existing, -1)); err != nil {
		return nil, err
	}
	res.Inode = ino
	return res, nil
}

// takeIdentity makes ino (new content) the file prev was: same inode
// number, owner, group, mode, access and creation time.
func takeIdentity(ino, prev *apiv1.Inode) {
	ino.Ino = inoOf(prev)
	ino.Owner, ino.Group, ino.Mode = prev.Owner, prev.Group, prev.Mode
	ino.AccessTimeMs, ino.CreationTimeMs = prev.AccessTimeMs, prev.CreationTimeMs
}

// applySetAttribute sets attributes on an inode and, when recursive, on
// everything under it. Pinning a directory always pins its whole subtree
// (and files created under it later inherit the pin), as in Alluxio.
func applySetAttribute(tx *bbolt.Tx, s *apiv1.SetAttributeEntry, now int64) (any, error) {
	ino, err := mustInode(tx, s.GetId())
	if err != nil {
		return nil, fmt.Errorf("set attribute: %w", err)
	}
	if s.TtlMs != nil && s.GetTtlMs() < 0 {
		return nil, fmt.Errorf("%w: negative ttl %d", meta.ErrInvalidArgument, s.GetTtlMs())
	}
	set := func(n *apiv1.Inode, all bool) error {
		old := proto.Clone(n).(*apiv1.Inode)
		if s.Pinned != nil {
			n.Pinned = s.GetPinned()
		}
		if all {
			if s.TtlMs != nil {
				n.TtlMs = s.GetTtlMs()
			}
			if s.TtlAction != nil {
				n.TtlAction = s.GetTtlAction()
			}
			if s.Mode != nil {
				n.Mode = s.GetMode() & 0o7777
			}
			if s.Owner != nil {
				n.Owner = s.GetOwner()
			}
			if s.Group != nil {
				n.Group = s.GetGroup()
			}
			if s.MtimeMs != nil {
				n.LastModificationTimeMs = s.GetMtimeMs()
			}
			if s.AtimeMs != nil {
				n.AccessTimeMs = s.GetAtimeMs()
			}
			if s.Mode != nil || s.Owner != nil || s.Group != nil || s.MtimeMs != nil {
				// A reader's atime update (relatime) alone is no change
				// of the inode; everything POSIX stores in it is.
				changed(n, now)
			}
			if s.GetPersist() && !n.Folder && n.Completed && n.PersistenceState == apiv1.PersistenceState_NOT_PERSISTED {
				n.PersistenceState = apiv1.PersistenceState_TO_BE_PERSISTED
			}
		}
		return putInode(tx, old, n)
	}
	if err := set(ino, true); err != nil {
		return nil, err
	}
	if !ino.Folder || (!s.GetRecursive() && s.Pinned == nil) {
		return applyResult{Inode: ino}, nil
	}
	stack := []int64{ino.Id}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		kids, err := children(tx, id)
		if err != nil {
			return nil, err
		}
		for _, k := range kids {
			if err := set(k, s.GetRecursive()); err != nil {
				return nil, err
			}
			if k.Folder {
				stack = append(stack, k.Id)
			}
		}
	}
	return applyResult{Inode: ino}, nil
}
