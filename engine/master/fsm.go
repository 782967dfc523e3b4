package master

import (
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// applyResult is what an applied entry returns to the leader.
type applyResult struct {
	Inode   *apiv1.Inode // the inode created or changed, if any
	Removed []int64      // ids of files removed (their cached blocks must be freed)
}

// applyEntry is the state machine: it applies one journal entry to the
// store. Every function checks all preconditions before its first write (a
// failed entry is rolled back by the journal, but it must fail the same way
// on every replay) and takes time only from the entry.
func applyEntry(tx *bbolt.Tx, e *apiv1.JournalEntry) (any, error) {
	if err := ensureBuckets(tx); err != nil {
		return nil, err
	}
	now := e.GetTimeMs()
	switch x := e.GetEntry().(type) {
	case *apiv1.JournalEntry_CreateInode:
		return applyCreate(tx, x.CreateInode, now)
	case *apiv1.JournalEntry_CompleteFile:
		return applyComplete(tx, x.CompleteFile, now)
	case *apiv1.JournalEntry_DeleteInode:
		return applyDelete(tx, x.DeleteInode, now)
	case *apiv1.JournalEntry_Rename:
		return applyRename(tx, x.Rename, now)
	case *apiv1.JournalEntry_SetAttribute:
		return applySetAttribute(tx, x.SetAttribute)
	case *apiv1.JournalEntry_AddMount:
		return applyAddMount(tx, x.AddMount, now)
	case *apiv1.JournalEntry_DeleteMount:
		return applyDeleteMount(tx, x.DeleteMount, now)
	case *apiv1.JournalEntry_SetPersistence:
		return applySetPersistence(tx, x.SetPersistence)
	case *apiv1.JournalEntry_SetChildrenLoaded:
		return applySetChildrenLoaded(tx, x.SetChildrenLoaded)
	case *apiv1.JournalEntry_SetClusterId:
		return applySetClusterID(tx, x.SetClusterId)
	}
	return nil, fmt.Errorf("%w: unknown journal entry %T", meta.ErrInvalidArgument, e.GetEntry())
}

func validName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: bad name %q", meta.ErrInvalidPath, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: name %q contains / or NUL", meta.ErrInvalidPath, name)
	case len(name) > meta.MaxNameLength:
		return fmt.Errorf("%w: name of %d bytes", meta.ErrNameTooLong, len(name))
	}
	return nil
}

func mustInode(tx *bbolt.Tx, id int64) (*apiv1.Inode, error) {
	ino, err := getInode(tx, id)
	if err != nil {
		return nil, err
	}
	if ino == nil {
		return nil, fmt.Errorf("inode %d: %w", id, meta.ErrNotFound)
	}
	return ino, nil
}

// putInode writes ino and keeps the indexes in step with old (nil: new inode).
func putInode(tx *bbolt.Tx, old, ino *apiv1.Inode) error {
	data, err := proto.Marshal(ino)
	if err != nil {
		return fmt.Errorf("encode inode %d: %w", ino.Id, err)
	}
	if err := tx.Bucket(bInodes).Put(idKey(ino.Id), data); err != nil {
		return err
	}
	if old == nil {
		if err := setCounter(tx, kInodeCount, counter(tx, kInodeCount)+1); err != nil {
			return err
		}
	} else if err := unindex(tx, old); err != nil {
		return err
	}
	return index(tx, ino)
}

func index(tx *bbolt.Tx, ino *apiv1.Inode) error {
	if ino.TtlMs > 0 {
		if err := tx.Bucket(bTTL).Put(ttlKey(ino.CreationTimeMs+ino.TtlMs, ino.Id), nil); err != nil {
			return err
		}
	}
	if ino.Folder {
		return nil
	}
	if ino.Pinned {
		if err := tx.Bucket(bPinned).Put(idKey(ino.Id), nil); err != nil {
			return err
		}
	}
	if ino.PersistenceState != apiv1.PersistenceState_PERSISTED {
		return tx.Bucket(bUnpersisted).Put(idKey(ino.Id), []byte{byte(ino.PersistenceState)})
	}
	return nil
}

func unindex(tx *bbolt.Tx, ino *apiv1.Inode) error {
	if ino.TtlMs > 0 {
		if err := tx.Bucket(bTTL).Delete(ttlKey(ino.CreationTimeMs+ino.TtlMs, ino.Id)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bPinned).Delete(idKey(ino.Id)); err != nil {
		return err
	}
	return tx.Bucket(bUnpersisted).Delete(idKey(ino.Id))
}

func removeInode(tx *bbolt.Tx, ino *apiv1.Inode) error {
	if err := unindex(tx, ino); err != nil {
		return err
	}
	if err := tx.Bucket(bInodes).Delete(idKey(ino.Id)); err != nil {
		return err
	}
	return setCounter(tx, kInodeCount, counter(tx, kInodeCount)-1)
}

// removeSubtree deletes ino and everything under it (not ino's own edge) and
// returns the ids of the files removed. Mount points inside lose their mount.
func removeSubtree(tx *bbolt.Tx, ino *apiv1.Inode) ([]int64, error) {
	top, err := pathOf(tx, ino)
	if err != nil {
		return nil, err
	}
	type item struct {
		ino  *apiv1.Inode
		path string
	}
	var removed []int64
	stack := []item{{ino, top}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.ino.Folder {
			kids, err := children(tx, it.ino.Id)
			if err != nil {
				return nil, err
			}
			for _, k := range kids {
				if err := tx.Bucket(bEdges).Delete(edgeKey(it.ino.Id, k.Name)); err != nil {
					return nil, err
				}
				stack = append(stack, item{k, meta.Join(it.path, k.Name)})
			}
		} else {
			removed = append(removed, it.ino.Id)
		}
		if it.ino.MountPoint {
			if err := tx.Bucket(bMounts).Delete([]byte(it.path)); err != nil {
				return nil, err
			}
		}
		if err := removeInode(tx, it.ino); err != nil {
			return nil, err
		}
	}
	return removed, nil
}

func touch(tx *bbolt.Tx, id, now int64) error {
	ino, err := mustInode(tx, id)
	if err != nil {
		return err
	}
	if ino.LastModificationTimeMs >= now {
		return nil
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.LastModificationTimeMs = now
	return putInode(tx, old, ino)
}

func nextID(tx *bbolt.Tx) (int64, error) {
	id := max(counter(tx, kNextInode), RootID+1)
	return id, setCounter(tx, kNextInode, id+1)
}

func applyCreate(tx *bbolt.Tx, c *apiv1.CreateInodeEntry, now int64) (any, error) {
	in := proto.Clone(c.GetInode()).(*apiv1.Inode)
	parent, err := mustInode(tx, c.GetParentId())
	if err != nil {
		return nil, fmt.Errorf("create %q: parent: %w", in.GetName(), err)
	}
	if !parent.Folder {
		return nil, fmt.Errorf("create %q: parent %q: %w", in.Name, parent.Name, meta.ErrNotDirectory)
	}
	if err := validName(in.Name); err != nil {
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
	}
	in.ParentId = parent.Id
	if in.CreationTimeMs == 0 {
		in.CreationTimeMs = now
	}
	if in.LastModificationTimeMs == 0 {
		in.LastModificationTimeMs = in.CreationTimeMs
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
	if err := touch(tx, parent.Id, now); err != nil {
		return nil, err
	}
	res.Inode = in
	return res, nil
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
	ino.LastModificationTimeMs = now
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

func applyDelete(tx *bbolt.Tx, d *apiv1.DeleteInodeEntry, now int64) (any, error) {
	ino, err := mustInode(tx, d.GetId())
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	switch {
	case ino.Id == RootID:
		return nil, fmt.Errorf("%w: cannot delete the root", meta.ErrFailedPrecondition)
	case ino.MountPoint:
		return nil, fmt.Errorf("%w: %q is a mount point: unmount it instead", meta.ErrFailedPrecondition, ino.Name)
	case ino.Folder && !d.GetRecursive() && hasChildren(tx, ino.Id):
		return nil, fmt.Errorf("delete %q: %w (delete recursively)", ino.Name, meta.ErrDirectoryNotEmpty)
	}
	removed, err := removeSubtree(tx, ino)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bEdges).Delete(edgeKey(ino.ParentId, ino.Name)); err != nil {
		return nil, err
	}
	if err := touch(tx, ino.ParentId, now); err != nil {
		return nil, err
	}
	return applyResult{Inode: ino, Removed: removed}, nil
}

func applyRename(tx *bbolt.Tx, r *apiv1.RenameEntry, now int64) (any, error) {
	ino, err := mustInode(tx, r.GetId())
	if err != nil {
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
	if err := validName(r.GetNewName()); err != nil {
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
	if existing != nil {
		switch {
		case !r.GetReplace():
			return nil, fmt.Errorf("rename to %q: %w", r.GetNewName(), meta.ErrAlreadyExists)
		case existing.MountPoint:
			return nil, fmt.Errorf("%w: rename onto mount point %q", meta.ErrFailedPrecondition, existing.Name)
		case existing.Folder && !ino.Folder:
			return nil, fmt.Errorf("rename file onto %q: %w", existing.Name, meta.ErrIsDirectory)
		case !existing.Folder && ino.Folder:
			return nil, fmt.Errorf("rename directory onto %q: %w", existing.Name, meta.ErrNotDirectory)
		case existing.Folder && hasChildren(tx, existing.Id):
			return nil, fmt.Errorf("rename onto %q: %w", existing.Name, meta.ErrDirectoryNotEmpty)
		}
	}
	var res applyResult
	if existing != nil {
		if res.Removed, err = removeSubtree(tx, existing); err != nil {
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
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.ParentId, ino.Name = np.Id, r.GetNewName()
	if err := putInode(tx, old, ino); err != nil {
		return nil, err
	}
	if err := touch(tx, old.ParentId, now); err != nil {
		return nil, err
	}
	if err := touch(tx, np.Id, now); err != nil {
		return nil, err
	}
	res.Inode = ino
	return res, nil
}

// applySetAttribute sets attributes on an inode and, when recursive, on
// everything under it. Pinning a directory always pins its whole subtree
// (and files created under it later inherit the pin), as in Alluxio.
func applySetAttribute(tx *bbolt.Tx, s *apiv1.SetAttributeEntry) (any, error) {
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

func applyAddMount(tx *bbolt.Tx, a *apiv1.AddMountEntry, now int64) (any, error) {
	m := proto.Clone(a.GetMount()).(*apiv1.MountPointInfo)
	p, err := meta.CleanPath(m.GetAlcovePath())
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	m.AlcovePath = p
	if tx.Bucket(bMounts).Get([]byte(p)) != nil {
		return nil, fmt.Errorf("mount %s: %w", p, meta.ErrAlreadyExists)
	}
	var ino *apiv1.Inode
	if p == "/" {
		root, err := getInode(tx, RootID)
		if err != nil {
			return nil, err
		}
		old := root
		if root == nil {
			root = &apiv1.Inode{Id: RootID, Folder: true, Mode: 0o755, CreationTimeMs: now, LastModificationTimeMs: now}
		} else {
			root = proto.Clone(root).(*apiv1.Inode)
		}
		root.Completed, root.MountPoint = true, true
		root.PersistenceState = apiv1.PersistenceState_PERSISTED
		if err := putInode(tx, old, root); err != nil {
			return nil, err
		}
		ino = root
	} else {
		comps := meta.Components(p)
		inodes, err := walk(tx, comps)
		if err != nil {
			return nil, err
		}
		if len(inodes) < len(comps) {
			return nil, fmt.Errorf("mount %s: parent %s: %w", p, meta.Parent(p), meta.ErrNotFound)
		}
		parent := inodes[len(comps)-1]
		if !parent.Folder {
			return nil, fmt.Errorf("mount %s: parent: %w", p, meta.ErrNotDirectory)
		}
		if len(inodes) == len(comps)+1 {
			ex := inodes[len(comps)]
			switch {
			case !ex.Folder:
				return nil, fmt.Errorf("mount %s: %w: a file is there", p, meta.ErrAlreadyExists)
			case ex.MountPoint:
				return nil, fmt.Errorf("mount %s: %w", p, meta.ErrAlreadyExists)
			case hasChildren(tx, ex.Id):
				return nil, fmt.Errorf("mount %s: %w", p, meta.ErrDirectoryNotEmpty)
			}
			ino = proto.Clone(ex).(*apiv1.Inode)
			ino.MountPoint, ino.ChildrenLoaded = true, false
			ino.PersistenceState = apiv1.PersistenceState_PERSISTED
			if err := putInode(tx, ex, ino); err != nil {
				return nil, err
			}
		} else {
			id, err := nextID(tx)
			if err != nil {
				return nil, err
			}
			ino = &apiv1.Inode{Id: id, ParentId: parent.Id, Name: comps[len(comps)-1], Folder: true, Mode: 0o755,
				CreationTimeMs: now, LastModificationTimeMs: now, Completed: true, MountPoint: true,
				PersistenceState: apiv1.PersistenceState_PERSISTED, Pinned: parent.Pinned}
			if err := putInode(tx, nil, ino); err != nil {
				return nil, err
			}
			if err := tx.Bucket(bEdges).Put(edgeKey(parent.Id, ino.Name), idKey(id)); err != nil {
				return nil, err
			}
			if err := touch(tx, parent.Id, now); err != nil {
				return nil, err
			}
		}
	}
	if m.MountId == 0 {
		m.MountId = max(counter(tx, kNextMount), 1)
		if err := setCounter(tx, kNextMount, m.MountId+1); err != nil {
			return nil, err
		}
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bMounts).Put([]byte(p), data); err != nil {
		return nil, err
	}
	return applyResult{Inode: ino}, nil
}

func applyDeleteMount(tx *bbolt.Tx, d *apiv1.DeleteMountEntry, now int64) (any, error) {
	p, err := meta.CleanPath(d.GetAlcovePath())
	if err != nil {
		return nil, fmt.Errorf("unmount: %w", err)
	}
	if p == "/" {
		return nil, fmt.Errorf("%w: cannot unmount the root", meta.ErrFailedPrecondition)
	}
	if tx.Bucket(bMounts).Get([]byte(p)) == nil {
		return nil, fmt.Errorf("unmount %s: not a mount point: %w", p, meta.ErrNotFound)
	}
	ino, err := resolve(tx, p)
	if err != nil {
		return nil, err
	}
	removed, err := removeSubtree(tx, ino)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bMounts).Delete([]byte(p)); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bEdges).Delete(edgeKey(ino.ParentId, ino.Name)); err != nil {
		return nil, err
	}
	if err := touch(tx, ino.ParentId, now); err != nil {
		return nil, err
	}
	return applyResult{Inode: ino, Removed: removed}, nil
}

func applySetPersistence(tx *bbolt.Tx, s *apiv1.SetPersistenceEntry) (any, error) {
	ino, err := mustInode(tx, s.GetId())
	if err != nil {
		return nil, fmt.Errorf("set persistence: %w", err)
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.PersistenceState = s.GetState()
	if s.GetUfsMtimeMs() != 0 {
		ino.UfsMtimeMs = s.GetUfsMtimeMs()
	}
	if s.GetUfsFingerprint() != "" {
		ino.UfsFingerprint = s.GetUfsFingerprint()
	}
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

func applySetChildrenLoaded(tx *bbolt.Tx, s *apiv1.SetChildrenLoadedEntry) (any, error) {
	ino, err := mustInode(tx, s.GetId())
	if err != nil {
		return nil, fmt.Errorf("set children loaded: %w", err)
	}
	if !ino.Folder {
		return nil, fmt.Errorf("set children loaded on %q: %w", ino.Name, meta.ErrNotDirectory)
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.ChildrenLoaded = s.GetLoaded()
	return applyResult{Inode: ino}, putInode(tx, old, ino)
}
