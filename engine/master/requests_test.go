package master

import (
	"errors"
	"testing"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// TestEntryDedup: two journal entries with one request id (a retry that
// raced its first attempt) apply once; the second returns the first result.
func TestEntryDedup(t *testing.T) {
	c := newCluster(t)
	rid := &apiv1.RequestId{ClientId: []byte("c1"), Seq: 7}
	first := createEntry(RootID, &apiv1.Inode{Name: "first", Folder: true, Mode: 0o755}, false)
	first.RequestId = rid
	r1, err := c.m.apply(c.ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	second := createEntry(RootID, &apiv1.Inode{Name: "second", Folder: true, Mode: 0o755}, false)
	second.RequestId = rid
	r2, err := c.m.apply(c.ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Inode.GetId() != r1.Inode.GetId() || r2.Inode.GetName() != "first" {
		t.Fatalf("second entry returned %v, want the first result %v", r2.Inode, r1.Inode)
	}
	if _, err := c.m.lookup("/second"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("the second entry was applied: %v", err)
	}
	// After a restart (replay from the store) the record is still there.
	c = c.restart()
	if ino, ok, err := c.m.appliedRequest(rid); err != nil || !ok || ino.GetName() != "first" {
		t.Fatalf("after restart: %v %v %v", ino, ok, err)
	}
}

// TestMovedInodeNotTouched: a delete or rename resolved from a path fails
// when the inode left that path before the entry applied.
func TestMovedInodeNotTouched(t *testing.T) {
	c := newCluster(t)
	a := c.mkdir("/a")
	c.mkdir("/b")
	for _, e := range []*apiv1.JournalEntry{
		{Entry: &apiv1.JournalEntry_DeleteInode{DeleteInode: &apiv1.DeleteInodeEntry{Id: a.FileId, ParentId: RootID, Name: "old-name"}}},
		{Entry: &apiv1.JournalEntry_Rename{Rename: &apiv1.RenameEntry{Id: a.FileId, NewParentId: RootID, NewName: "c", ParentId: RootID, Name: "old-name"}}},
	} {
		if _, err := c.m.apply(c.ctx, e); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("%T on a moved inode: %v, want NotFound", e.GetEntry(), err)
		}
	}
	if c.stat("/a").FileId != a.FileId {
		t.Fatal("/a changed")
	}
}
