package master

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// journalInput frames entries the way FuzzJournalApply reads them: each a
// uvarint length and a marshaled JournalEntry.
func journalInput(tb testing.TB, entries ...*apiv1.JournalEntry) []byte {
	var b []byte
	for _, e := range entries {
		data, err := proto.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
	}
	return b
}

// journalEntries decodes the fuzz input; an undecodable entry becomes nil
// (the raft FSM answers it with an error and applies nothing).
func journalEntries(b []byte) []*apiv1.JournalEntry {
	var out []*apiv1.JournalEntry
	for len(b) > 0 && len(out) < 64 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return out
		}
		e := &apiv1.JournalEntry{}
		if proto.Unmarshal(b[k:k+int(n)], e) != nil {
			e = nil
		}
		out = append(out, e)
		b = b[k+int(n):]
	}
	return out
}

func seedJournal(tb testing.TB) [][]byte {
	t0 := int64(1_700_000_000_000)
	at := func(ms int64, e *apiv1.JournalEntry) *apiv1.JournalEntry { e.TimeMs = t0 + ms; return e }
	mount := func(p, uri string) *apiv1.JournalEntry {
		return &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_AddMount{AddMount: &apiv1.AddMountEntry{Mount: &apiv1.MountPointInfo{AlcovePath: p, UfsUri: uri}}}}
	}
	dir := func(parent int64, name string) *apiv1.JournalEntry {
		return createEntry(parent, &apiv1.Inode{Name: name, Folder: true, Mode: 0o755}, false)
	}
	file := func(parent int64, name string) *apiv1.JournalEntry {
		return createEntry(parent, &apiv1.Inode{Name: name, Mode: 0o644, BlockSizeBytes: 64 << 20, Owner: "alice", Group: "staff"}, false)
	}
	complete := func(id, n int64, st apiv1.PersistenceState) *apiv1.JournalEntry {
		return &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CompleteFile{CompleteFile: &apiv1.CompleteFileEntry{Id: id, Length: n, PersistenceState: st}}}
	}
	pin, ttl := true, int64(60_000)
	root := mount("/", "file:///var/alcove/underFSStorage")
	return [][]byte{
		journalInput(tb, at(0, root), at(1, dir(RootID, "a")), at(2, file(2, "f")), at(3, complete(3, 100, apiv1.PersistenceState_NOT_PERSISTED)),
			at(4, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_Rename{Rename: &apiv1.RenameEntry{Id: 3, NewParentId: RootID, NewName: "g"}}}),
			at(5, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{Id: 2, Pinned: &pin, TtlMs: &ttl, Recursive: true}}}),
			at(6, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetPersistence{SetPersistence: &apiv1.SetPersistenceEntry{Id: 3, State: apiv1.PersistenceState_PERSISTED, UfsMtimeMs: 5}}}),
			at(7, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: 2, Recursive: true}}})),
		journalInput(tb, at(0, root), at(1, mount("/mnt", "s3://bucket/prefix")), at(2, file(2, "x")), at(3, dir(2, "d")),
			at(4, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetChildrenLoaded{SetChildrenLoaded: &apiv1.SetChildrenLoadedEntry{Id: 2, Loaded: true}}}),
			at(5, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteMount{DeleteMount: &apiv1.DeleteMountEntry{AlcovePath: "/mnt"}}}),
			at(6, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetClusterId{SetClusterId: &apiv1.SetClusterIdEntry{ClusterId: "c-1"}}})),
		journalInput(tb, at(0, root), at(1, file(RootID, "f")), at(2, createEntry(RootID, &apiv1.Inode{Name: "f", BlockSizeBytes: 4}, true)),
			at(3, complete(3, 7, apiv1.PersistenceState_PERSISTED)), at(4, complete(3, 8, 0))),
		// Open-unlinked files (orphans), replace-by-rename with identity,
		// the child-directory count, a pinned directory with a symlink.
		journalInput(tb, at(0, root), at(1, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CountChildDirs{CountChildDirs: &apiv1.CountChildDirsEntry{}}}),
			at(2, dir(RootID, "d")), at(3, file(2, "f")), at(4, file(2, "g")), at(5, dir(2, "sub")), at(5, file(RootID, "h")),
			at(6, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: 3, OrphanSession: "fuse-1"}}}),
			at(7, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_Rename{Rename: &apiv1.RenameEntry{Id: 4, NewParentId: RootID, NewName: "h", Replace: true, KeepIdentity: true, OrphanSession: "fuse-1"}}}),
			at(8, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_Rename{Rename: &apiv1.RenameEntry{Id: 5, NewParentId: RootID, NewName: "sub2"}}}),
			at(9, createEntry(2, &apiv1.Inode{Name: "ln", SymlinkTarget: "../h", Length: 4, Completed: true}, false)),
			at(10, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{Id: 2, Pinned: &pin, Recursive: true}}}),
			at(11, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: 2, Recursive: true}}})),
		// Regression: completing an inode without a block size (a symlink)
		// divided by zero.
		journalInput(tb, at(0, root), at(1, createEntry(RootID, &apiv1.Inode{Name: "l", SymlinkTarget: "/t", Length: 2, Completed: true}, false)),
			at(2, createEntry(RootID, &apiv1.Inode{Name: "f"}, false)), at(3, complete(2, 100, 0)), at(4, complete(3, 7, 0))),
		// Regressions: a create entry without an inode panicked every
		// master that applied it; an explicit inode id above the id counter
		// was handed out again later, overwriting that inode.
		journalInput(tb, at(0, root), at(1, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CreateInode{CreateInode: &apiv1.CreateInodeEntry{ParentId: RootID}}})),
		journalInput(tb, at(0, root), at(1, createEntry(RootID, &apiv1.Inode{Id: 5, Name: "five"}, false)), at(2, dir(RootID, "b")), at(3, dir(RootID, "c")), at(4, dir(RootID, "d")), at(5, dir(RootID, "e"))),
	}
}

// FuzzJournalApply decodes a sequence of journal entries and applies each to
// a fresh metadata store the way the raft FSM does (one bbolt transaction
// per entry, rolled back when the entry fails). Properties: no panic; after
// every entry the store is consistent (checkStore); and applying the same
// sequence to a second store gives byte-identical contents — the replay on
// every standby master must reach the same state.
func FuzzJournalApply(f *testing.F) {
	for _, s := range seedJournal(f) {
		f.Add(s)
	}
	dir := f.TempDir()
	var dbs [2]*bbolt.DB
	for i := range dbs {
		db, err := bbolt.Open(filepath.Join(dir, fmt.Sprintf("fuzz-%d.db", i)), 0o600, &bbolt.Options{NoSync: true, NoFreelistSync: true})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		entries := journalEntries(in)
		var dumps [2][]byte
		for i, db := range dbs {
			if err := db.Update(func(tx *bbolt.Tx) error {
				return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error { return tx.DeleteBucket(name) })
			}); err != nil {
				t.Fatal(err)
			}
			for k, e := range entries {
				if e == nil {
					continue
				}
				_ = db.Update(func(tx *bbolt.Tx) error { _, err := applyEntry(tx, e); return err })
				if err := db.View(checkStore); err != nil {
					t.Fatalf("after entry %d (%v): %v", k, e, err)
				}
			}
			if err := db.View(func(tx *bbolt.Tx) error { dumps[i] = dumpStore(tx); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(dumps[0], dumps[1]) {
			t.Fatalf("two replays of the same entries differ")
		}
	})
}

// dumpStore serializes every bucket, in key order.
func dumpStore(tx *bbolt.Tx) []byte {
	var b []byte
	_ = tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
		b = append(append(b, name...), 0)
		return bk.ForEach(func(k, v []byte) error {
			b = binary.AppendUvarint(append(b, k...), uint64(len(v)))
			b = append(b, v...)
			return nil
		})
	})
	return b
}

// checkStore verifies the store's invariants: every inode but the root and
// orphans (open files unlinked, parentless) has exactly the edge (parent,
// name) that names it, under a directory, with a valid name; every edge
// names an inode that points back; every named inode reaches the root; ids
// stay below the id counter; directories count their subdirectories (once
// the store keeps the count); the inode count and the pinned, unpersisted,
// ttl, orphan and mount indexes match the inodes.
func checkStore(tx *bbolt.Tx) error {
	if tx.Bucket(bInodes) == nil {
		return nil // nothing applied yet
	}
	inodes := map[int64]*apiv1.Inode{}
	err := tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
		ino := &apiv1.Inode{}
		if err := proto.Unmarshal(v, ino); err != nil {
			return fmt.Errorf("inode key %x: %w", k, err)
		}
		if !bytes.Equal(k, idKey(ino.Id)) {
			return fmt.Errorf("inode %d stored under key %x", ino.Id, k)
		}
		inodes[ino.Id] = ino
		return nil
	})
	if err != nil {
		return err
	}
	if len(inodes) == 0 {
		return nil
	}
	if got := counter(tx, kInodeCount); got != int64(len(inodes)) {
		return fmt.Errorf("inode count %d, but %d inodes", got, len(inodes))
	}
	root := inodes[RootID]
	if root == nil || !root.Folder || root.ParentId != 0 {
		return fmt.Errorf("root inode %v", root)
	}
	next := max(counter(tx, kNextInode), RootID+1)
	wantPinned, wantUnpersisted, wantTTL := map[string]bool{}, map[string]bool{}, map[string]bool{}
	mountPoints := map[int64]bool{}
	orphans := map[string]bool{}
	childDirs := map[int64]int64{}
	for id, ino := range inodes {
		if isOrphan(ino) {
			if ino.Folder || ino.ParentId != 0 {
				return fmt.Errorf("orphan %d: folder %t, parent %d", id, ino.Folder, ino.ParentId)
			}
			orphans[string(orphanKey(ino.OrphanSession, id))] = true
		} else if id != RootID {
			if ino.Folder {
				childDirs[ino.ParentId]++
			}
			if id >= next || id <= 0 {
				return fmt.Errorf("inode %d outside the ids handed out (next %d)", id, next)
			}
			p := inodes[ino.ParentId]
			if p == nil || !p.Folder {
				return fmt.Errorf("inode %d %q: parent %d is %v", id, ino.Name, ino.ParentId, p)
			}
			if err := meta.ValidName(ino.Name); err != nil {
				return fmt.Errorf("inode %d: %w", id, err)
			}
			if got := childID(tx, ino.ParentId, ino.Name); got != id {
				return fmt.Errorf("inode %d %q: edge from %d names %d", id, ino.Name, ino.ParentId, got)
			}
			a := ino
			for n := 0; a.Id != RootID; n++ {
				if a = inodes[a.ParentId]; a == nil || n > len(inodes) {
					return fmt.Errorf("inode %d does not reach the root", id)
				}
			}
		}
		if ino.MountPoint {
			mountPoints[id] = true
		}
		if ino.TtlMs > 0 && !isOrphan(ino) {
			wantTTL[string(ttlKey(ino.CreationTimeMs+ino.TtlMs, id))] = true
		}
		if ino.Folder || isSymlink(ino) {
			continue // no blocks
		}
		if ino.Pinned {
			wantPinned[string(idKey(id))] = true
		}
		if ino.PersistenceState != apiv1.PersistenceState_PERSISTED {
			wantUnpersisted[string(idKey(id))] = true
		}
	}
	if counter(tx, kChildDirsCounted) != 0 {
		for id, ino := range inodes {
			if ino.Folder && ino.ChildDirs != childDirs[id] {
				return fmt.Errorf("directory %d %q: child_dirs %d, but %d subdirectories", id, ino.Name, ino.ChildDirs, childDirs[id])
			}
		}
	}
	edges := 0
	if err := tx.Bucket(bEdges).ForEach(func(k, v []byte) error {
		edges++
		parent, name, id := int64(binary.BigEndian.Uint64(k)), string(k[8:]), int64(binary.BigEndian.Uint64(v))
		if c := inodes[id]; c == nil || c.ParentId != parent || c.Name != name {
			return fmt.Errorf("edge %d/%q names inode %d = %v", parent, name, id, c)
		}
		return nil
	}); err != nil {
		return err
	}
	if edges != len(inodes)-1-len(orphans) {
		return fmt.Errorf("%d edges for %d inodes, %d of them orphans", edges, len(inodes), len(orphans))
	}
	for _, idx := range []struct {
		bucket []byte
		want   map[string]bool
	}{{bPinned, wantPinned}, {bUnpersisted, wantUnpersisted}, {bTTL, wantTTL}, {bOrphans, orphans}} {
		got := 0
		if err := tx.Bucket(idx.bucket).ForEach(func(k, _ []byte) error {
			if !idx.want[string(k)] {
				return fmt.Errorf("index %s has stray key %x", idx.bucket, k)
			}
			got++
			return nil
		}); err != nil {
			return err
		}
		if got != len(idx.want) {
			return fmt.Errorf("index %s has %d keys, want %d", idx.bucket, got, len(idx.want))
		}
	}
	all, err := mounts(tx)
	if err != nil {
		return err
	}
	for _, m := range all {
		ino, err := resolve(tx, m.AlcovePath)
		if err != nil || ino == nil || !ino.MountPoint {
			return fmt.Errorf("mount %s resolves to %v, %v", m.AlcovePath, ino, err)
		}
		delete(mountPoints, ino.Id)
	}
	for id := range mountPoints {
		return fmt.Errorf("inode %d %q is a mount point without a mount", id, inodes[id].Name)
	}
	return nil
}
