package master

// The journal entries of the mount table and of UFS metadata state
// (persistence, children loaded, the directory-count migration).

import (
	"fmt"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

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
			if err := touch(tx, parent.Id, now, 1); err != nil {
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
	if err := touch(tx, ino.ParentId, now, -1); err != nil {
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
	return putFile(tx, old, ino)
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

// applyCountChildDirs sets every directory's child_dirs from its entries
// (stores written before the count was kept), then marks the store.
func applyCountChildDirs(tx *bbolt.Tx) (any, error) {
	if counter(tx, kChildDirsCounted) != 0 {
		return applyResult{}, nil
	}
	counts := map[int64]int64{}
	var dirs []int64
	err := tx.Bucket(bInodes).ForEach(func(_, v []byte) error {
		ino := &apiv1.Inode{}
		if err := proto.Unmarshal(v, ino); err != nil {
			return err
		}
		if ino.Folder {
			dirs = append(dirs, ino.Id)
			if ino.Id != RootID && !isOrphan(ino) {
				counts[ino.ParentId]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count subdirectories: %w", err)
	}
	for _, id := range dirs {
		ino, err := mustInode(tx, id)
		if err != nil {
			return nil, err
		}
		if ino.ChildDirs == counts[id] {
			continue
		}
		old := proto.Clone(ino).(*apiv1.Inode)
		ino.ChildDirs = counts[id]
		if err := putInode(tx, old, ino); err != nil {
			return nil, err
		}
	}
	return applyResult{}, setCounter(tx, kChildDirsCounted, 1)
}
