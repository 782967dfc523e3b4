package master

import (
	"fmt"

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
	if e.GetRequestId() == nil {
		return applyMutation(tx, e)
	}
	if res, ok, err := dedupEntry(tx, e); err != nil || ok {
		return res, err
	}
	v, err := applyMutation(tx, e)
	if err != nil {
		return nil, err
	}
	res, _ := v.(applyResult)
	return res, recordEntry(tx, e, res)
}

func applyMutation(tx *bbolt.Tx, e *apiv1.JournalEntry) (any, error) {
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
		return applySetAttribute(tx, x.SetAttribute, now)
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
	case *apiv1.JournalEntry_SetMasterAddress:
		return applySetMasterAddress(tx, x.SetMasterAddress)
	case *apiv1.JournalEntry_SetTokenSecret:
		return applySetTokenSecret(tx, x.SetTokenSecret)
	case *apiv1.JournalEntry_CountChildDirs:
		return applyCountChildDirs(tx)
	}
	return nil, fmt.Errorf("%w: unknown journal entry %T", meta.ErrInvalidArgument, e.GetEntry())
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
	if isOrphan(ino) {
		// No name: no TTL; its blocks stay protected (unpersisted) below.
		if err := tx.Bucket(bOrphans).Put(orphanKey(ino.OrphanSession, ino.Id), nil); err != nil {
			return err
		}
	} else if ino.TtlMs > 0 {
		if err := tx.Bucket(bTTL).Put(ttlKey(ino.CreationTimeMs+ino.TtlMs, ino.Id), nil); err != nil {
			return err
		}
	}
	if ino.Folder || isSymlink(ino) {
		return nil // no blocks
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
	if isOrphan(ino) {
		if err := tx.Bucket(bOrphans).Delete(orphanKey(ino.OrphanSession, ino.Id)); err != nil {
			return err
		}
	}
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

// touch records a change of directory id's entries at now (mtime and
// ctime) and a change of its subdirectory count by dirs.
func touch(tx *bbolt.Tx, id, now, dirs int64) error {
	ino, err := mustInode(tx, id)
	if err != nil {
		return err
	}
	if ino.LastModificationTimeMs >= now && ino.ChangeTimeMs >= now && dirs == 0 {
		return nil
	}
	old := proto.Clone(ino).(*apiv1.Inode)
	ino.LastModificationTimeMs = max(ino.LastModificationTimeMs, now)
	ino.ChangeTimeMs = max(ino.ChangeTimeMs, now)
	ino.ChildDirs = max(ino.ChildDirs+dirs, 0)
	return putInode(tx, old, ino)
}

// dirCount is what a directory's subdirectory count changes by when ino
// enters (1) or leaves (-1) it.
func dirCount(ino *apiv1.Inode, sign int64) int64 {
	if ino != nil && ino.Folder {
		return sign
	}
	return 0
}

// changed records a change of ino itself at now (ctime).
func changed(ino *apiv1.Inode, now int64) {
	ino.ChangeTimeMs = max(ino.ChangeTimeMs, now)
}

func nextID(tx *bbolt.Tx) (int64, error) {
	id := max(counter(tx, kNextInode), RootID+1)
	return id, setCounter(tx, kNextInode, id+1)
}
