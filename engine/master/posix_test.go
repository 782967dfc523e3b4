package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// TestPOSIXTimes: ctime moves with every change of the inode, atime is
// kept and set, mtime and ctime of directories move with their entries.
func TestPOSIXTimes(t *testing.T) {
	c := newCluster(t)
	f := c.writeFile("/d/f", 10, apiv1.WriteType_MUST_CACHE)
	if f.AccessTimeMs == 0 || f.ChangeTimeMs == 0 || f.ChangeTimeMs < f.LastModificationTimeMs {
		t.Fatalf("new file times: atime %d mtime %d ctime %d", f.AccessTimeMs, f.LastModificationTimeMs, f.ChangeTimeMs)
	}
	step := func() { time.Sleep(5 * time.Millisecond) }
	set := func(req *apiv1.SetAttributeRequest) *apiv1.FileInfo {
		t.Helper()
		step()
		before := c.stat("/d/f")
		req.Path = "/d/f"
		if _, err := c.fs.SetAttribute(c.ctx, req); err != nil {
			t.Fatal(err)
		}
		after := c.stat("/d/f")
		return compareTimes(t, before, after)
	}
	mode := uint32(0o600)
	if fi := set(&apiv1.SetAttributeRequest{Mode: &mode}); fi == nil {
		t.Fatal("chmod did not move ctime")
	}
	owner := "12"
	if fi := set(&apiv1.SetAttributeRequest{Owner: &owner}); fi == nil {
		t.Fatal("chown did not move ctime")
	}
	atime := int64(1_000_000_000_000)
	step()
	before := c.stat("/d/f")
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/d/f", AtimeMs: &atime}); err != nil {
		t.Fatal(err)
	}
	after := c.stat("/d/f")
	if after.AccessTimeMs != atime || after.ChangeTimeMs != before.ChangeTimeMs {
		t.Fatalf("atime update: atime %d (want %d), ctime %d → %d (a reader's atime is no change)", after.AccessTimeMs, atime, before.ChangeTimeMs, after.ChangeTimeMs)
	}
	step()
	d0 := c.stat("/d")
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/d/f", Dst: "/d/g"}); err != nil {
		t.Fatal(err)
	}
	g, d1 := c.stat("/d/g"), c.stat("/d")
	if g.ChangeTimeMs <= after.ChangeTimeMs || g.AccessTimeMs != atime {
		t.Fatalf("rename: ctime %d (was %d), atime %d", g.ChangeTimeMs, after.ChangeTimeMs, g.AccessTimeMs)
	}
	if d1.LastModificationTimeMs <= d0.LastModificationTimeMs || d1.ChangeTimeMs <= d0.ChangeTimeMs {
		t.Fatalf("directory times after a rename in it: mtime %d → %d, ctime %d → %d", d0.LastModificationTimeMs, d1.LastModificationTimeMs, d0.ChangeTimeMs, d1.ChangeTimeMs)
	}
}

// compareTimes returns after when its ctime moved past before's, else nil.
func compareTimes(t *testing.T, before, after *apiv1.FileInfo) *apiv1.FileInfo {
	t.Helper()
	if after.ChangeTimeMs > before.ChangeTimeMs {
		return after
	}
	return nil
}

// TestPOSIXInodeNumbers: a rename keeping the identity (a FUSE commit)
// keeps the inode number, owner, mode and atime of the replaced file; a
// plain rename over a file gives the name the moved file's number.
func TestPOSIXInodeNumbers(t *testing.T) {
	c := newCluster(t)
	a := c.writeFile("/a", 1, apiv1.WriteType_MUST_CACHE)
	if a.Ino != a.FileId {
		t.Fatalf("a new file's inode number %d, want its id %d", a.Ino, a.FileId)
	}
	mode, owner := uint32(0o640), "77"
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/a", Mode: &mode, Owner: &owner}); err != nil {
		t.Fatal(err)
	}
	tmp := c.writeFile("/.tmp-a", 2, apiv1.WriteType_MUST_CACHE)
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/.tmp-a", Dst: "/a", Overwrite: true, KeepIdentity: true}); err != nil {
		t.Fatal(err)
	}
	a2 := c.stat("/a")
	if a2.FileId != tmp.FileId || a2.Ino != a.FileId || a2.Mode != 0o640 || a2.Owner != "77" || a2.Length != 2 {
		t.Fatalf("after a commit: id %d ino %d mode %o owner %q length %d; want id %d ino %d mode 640 owner 77 length 2",
			a2.FileId, a2.Ino, a2.Mode, a2.Owner, a2.Length, tmp.FileId, a.FileId)
	}
	// Twice: the number survives a chain of commits.
	c.writeFile("/.tmp-a", 3, apiv1.WriteType_MUST_CACHE)
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/.tmp-a", Dst: "/a", Overwrite: true, KeepIdentity: true}); err != nil {
		t.Fatal(err)
	}
	if a3 := c.stat("/a"); a3.Ino != a.FileId {
		t.Fatalf("second commit: ino %d, want %d", a3.Ino, a.FileId)
	}
	b := c.writeFile("/b", 1, apiv1.WriteType_MUST_CACHE)
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/b", Dst: "/a", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if a4 := c.stat("/a"); a4.Ino != b.FileId {
		t.Fatalf("a plain rename over a: ino %d, want b's %d", a4.Ino, b.FileId)
	}
	_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/a", Dst: "/nothere", KeepIdentity: true})
	wantCode(t, err, codes.InvalidArgument, "keep identity without a file to take it from")
}

// TestPOSIXDirLinks: a directory's link count is 2 + its subdirectories,
// through mkdir, rmdir, renames across directories and replaces; a store
// from before the count is recounted at start.
func TestPOSIXDirLinks(t *testing.T) {
	c := newCluster(t)
	nlink := func(p string) uint32 { t.Helper(); return c.stat(p).Nlink }
	c.mkdir("/d/x")
	c.mkdir("/d/y")
	c.writeFile("/d/f", 1, apiv1.WriteType_MUST_CACHE)
	if n := nlink("/d"); n != 4 {
		t.Fatalf("/d with two subdirectories: nlink %d", n)
	}
	if n := nlink("/d/f"); n != 1 {
		t.Fatalf("file nlink %d", n)
	}
	c.mkdir("/e/z")
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/d/y", Dst: "/e/y"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/d/x", Dst: "/e/z", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if d, e := nlink("/d"), nlink("/e"); d != 2 || e != 4 {
		t.Fatalf("after moves: /d nlink %d (want 2), /e nlink %d (want 4)", d, e)
	}
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/e", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if n := nlink("/"); n != 3 {
		t.Fatalf("root with /d: nlink %d", n)
	}
	// A store written before the count: zero it, restart, counted.
	err := c.m.store.Init(func(tx *bbolt.Tx) error {
		root, err := getInode(tx, RootID)
		if err != nil {
			return err
		}
		old := proto.Clone(root).(*apiv1.Inode)
		root.ChildDirs = 0
		if err := putInode(tx, old, root); err != nil {
			return err
		}
		return setCounter(tx, kChildDirsCounted, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	c = c.restart()
	if n := nlink("/"); n != 3 {
		t.Fatalf("after the recount: root nlink %d, want 3", n)
	}
}

// TestPOSIXOrphans: a file unlinked (or replaced) while open keeps its
// blocks and its UFS copy (moved aside) until its session releases it;
// nothing of it shows in the namespace or the UFS listing meanwhile, and
// nothing stays behind after.
func TestPOSIXOrphans(t *testing.T) {
	c := newCluster(t)
	f := c.writeFile("/o/f", 5, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/o/f", OrphanSession: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/o/f"}); code(err) != codes.NotFound {
		t.Fatalf("the name stays: %v", err)
	}
	r, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{FileId: f.FileId})
	if err != nil {
		t.Fatal(err)
	}
	o := r.FileInfo
	if !o.Orphan || o.Nlink != 0 || o.Length != 5 || o.PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("orphan: %+v", o)
	}
	ents, _ := os.ReadDir(filepath.Join(c.ufs, "o"))
	if len(ents) != 0 {
		t.Fatalf("the UFS directory still lists %v", ents)
	}
	if !exists(uriPath(o.UfsPath)) {
		t.Fatalf("the orphan's UFS copy %s is gone", o.UfsPath)
	}
	if len(c.ls("/o", true)) != 0 {
		t.Fatal("the orphan shows in a listing (with UFS sync)")
	}
	// Replaced by a rename while open: the replaced file is an orphan.
	c.writeFile("/o/g", 3, apiv1.WriteType_CACHE_THROUGH)
	g := c.stat("/o/g")
	c.writeFile("/o/h", 4, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/o/h", Dst: "/o/g", Overwrite: true, OrphanSession: "s1"}); err != nil {
		t.Fatal(err)
	}
	r, err = c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{FileId: g.FileId})
	if err != nil || !r.FileInfo.Orphan || r.FileInfo.Length != 3 {
		t.Fatalf("replaced file: %v %v", r.GetFileInfo(), err)
	}
	if b, err := os.ReadFile(uriPath(r.FileInfo.UfsPath)); err != nil || len(b) != 3 {
		t.Fatalf("the replaced file's UFS copy: %d bytes, %v", len(b), err)
	}
	// Persists of an orphan are dropped; a mount of the session starting
	// afresh releases everything.
	_, err = c.fs.ReleaseOrphans(c.ctx, &apiv1.ReleaseOrphansRequest{Session: "other", FileIds: []int64{f.FileId}})
	wantCode(t, err, codes.FailedPrecondition, "release another session's orphan")
	rel, err := c.fs.ReleaseOrphans(c.ctx, &apiv1.ReleaseOrphansRequest{Session: "s1", FileIds: []int64{f.FileId}})
	if err != nil || rel.Released != 1 {
		t.Fatalf("release: %v %v", rel, err)
	}
	if exists(uriPath(o.UfsPath)) {
		t.Fatal("the released orphan's UFS copy stays")
	}
	if rel, err = c.fs.ReleaseOrphans(c.ctx, &apiv1.ReleaseOrphansRequest{Session: "s1"}); err != nil || rel.Released != 1 {
		t.Fatalf("release the session: %v %v", rel, err)
	}
	if _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{FileId: g.FileId}); code(err) != codes.NotFound {
		t.Fatalf("released orphan still there: %v", err)
	}
	ents, _ = os.ReadDir(c.ufs)
	for _, e := range ents {
		if e.Name() != "o" {
			t.Errorf("left in the UFS: %s", e.Name())
		}
	}
	if names := c.ls("/o", true); len(names) != 1 || names["g"] == nil {
		t.Fatalf("listing after release: %v", names)
	}
}

func uriPath(uri string) string { return filepath.Clean(strings.TrimPrefix(uri, "file://")) }

// TestPOSIXSymlinks: a link lives in the master; with a write type that
// reaches the UFS the local UFS gets a real link (and its directories
// are marked persisted, so deleting them reaches the UFS); a link found in
// the UFS loads as a link.
func TestPOSIXSymlinks(t *testing.T) {
	c := newCluster(t)
	c.mkdir("/l")
	r, err := c.fs.CreateSymlink(c.ctx, &apiv1.CreateSymlinkRequest{Path: "/l/s", Target: "../t", Owner: "5", WriteType: apiv1.WriteType_CACHE_THROUGH})
	if err != nil {
		t.Fatal(err)
	}
	s := r.FileInfo
	if s.SymlinkTarget != "../t" || s.Length != 4 || s.Mode != 0o777 || s.Owner != "5" || s.PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("link: %+v", s)
	}
	if tgt, err := os.Readlink(filepath.Join(c.ufs, "l", "s")); err != nil || tgt != "../t" {
		t.Fatalf("UFS link: %q %v", tgt, err)
	}
	if c.stat("/l").PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatal("the link's directory is not marked persisted")
	}
	_, err = c.fs.CreateSymlink(c.ctx, &apiv1.CreateSymlinkRequest{Path: "/l/s", Target: "x"})
	wantCode(t, err, codes.AlreadyExists, "link over an existing name")
	_, err = c.fs.CreateSymlink(c.ctx, &apiv1.CreateSymlinkRequest{Path: "/l/e", Target: ""})
	wantCode(t, err, codes.InvalidArgument, "empty target")
	r, err = c.fs.CreateSymlink(c.ctx, &apiv1.CreateSymlinkRequest{Path: "/l/m", Target: "t", WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil || r.FileInfo.PersistenceState == apiv1.PersistenceState_PERSISTED || exists(filepath.Join(c.ufs, "l", "m")) {
		t.Fatalf("MUST_CACHE link: %v %v", r.GetFileInfo(), err)
	}
	// A link made in the UFS loads as a link.
	if err := os.Symlink("/abs/target", filepath.Join(c.ufs, "l", "u")); err != nil {
		t.Fatal(err)
	}
	if u := c.ls("/l", true)["u"]; u == nil || u.SymlinkTarget != "/abs/target" {
		t.Fatalf("UFS link loaded as %+v", u)
	}
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/l/s", Dst: "/l/s2"}); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(filepath.Join(c.ufs, "l", "s2")); err != nil || tgt != "../t" {
		t.Fatalf("renamed UFS link: %q %v", tgt, err)
	}
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/l", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(c.ufs, "l")) {
		t.Fatal("deleting the directory left it in the UFS")
	}
}

// TestPOSIXHoles: a file completed with holes has no blocks for them, is
// fully "in Alcove" without any cached block of a hole, is never LOST for
// a hole, and bad runs are refused.
func TestPOSIXHoles(t *testing.T) {
	c := newCluster(t)
	r, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/h", BlockSizeBytes: 1 << 20, WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil {
		t.Fatal(err)
	}
	bad := []*apiv1.BlockRun{{Start: 2, Count: 5}}
	_, err = c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/h", FileId: r.FileInfo.FileId, Length: 3 << 20, Holes: bad})
	wantCode(t, err, codes.InvalidArgument, "a hole run beyond the file")
	holes := []*apiv1.BlockRun{{Start: 0, Count: 3}}
	done, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/h", FileId: r.FileInfo.FileId, Length: 3 << 20, Holes: holes})
	if err != nil {
		t.Fatal(err)
	}
	fi := done.FileInfo
	if len(fi.BlockIds) != 0 || len(fi.Holes) != 1 || fi.InAlcovePercentage != 100 || fi.PersistenceState == apiv1.PersistenceState_LOST {
		t.Fatalf("a file of holes: blocks %v holes %v in alcove %d%% state %v", fi.BlockIds, fi.Holes, fi.InAlcovePercentage, fi.PersistenceState)
	}
	// A file with one data block not cached anywhere is LOST; its hole is not.
	r, _ = c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/g", BlockSizeBytes: 1 << 20, WriteType: apiv1.WriteType_MUST_CACHE})
	done, err = c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/g", FileId: r.FileInfo.FileId, Length: 2 << 20, Holes: []*apiv1.BlockRun{{Start: 0, Count: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if fi := done.FileInfo; len(fi.BlockIds) != 1 || fi.BlockIds[0] != meta.BlockID(r.FileInfo.FileId, 1) || fi.PersistenceState != apiv1.PersistenceState_LOST {
		t.Fatalf("one hole, one uncached block: blocks %v state %v", fi.BlockIds, fi.PersistenceState)
	}
}
