package master

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

func TestMetadataLoadFromUFS(t *testing.T) {
	ufsDir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(ufsDir, "data/deep/er"), 0o755))
	must(os.WriteFile(filepath.Join(ufsDir, "data/one"), make([]byte, 100), 0o640))
	must(os.WriteFile(filepath.Join(ufsDir, "data/deep/er/two"), make([]byte, 70<<20), 0o644))
	c := startMaster(t, t.TempDir(), ufsDir)

	// GetStatus of a deep path loads every missing component.
	two := c.stat("/data/deep/er/two")
	if two.Length != 70<<20 || two.PersistenceState != apiv1.PersistenceState_PERSISTED || !two.Completed ||
		two.BlockSizeBytes != meta.DefaultBlockSize || len(two.BlockIds) != 2 {
		t.Fatalf("loaded file: %+v", two)
	}
	if two.PersistenceState == apiv1.PersistenceState_LOST || two.InAlcovePercentage != 0 {
		t.Fatal("a persisted uncached file is not lost")
	}
	if d := c.stat("/data/deep"); !d.Folder || d.PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("loaded dir: %+v", d)
	}
	// The inode is now stored: same id on a second look.
	if again := c.stat("/data/deep/er/two"); again.FileId != two.FileId {
		t.Fatal("second stat loaded again")
	}
	wantCode(t, func() error {
		_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/data/missing"})
		return err
	}(), codes.NotFound, "missing in UFS")

	// ListStatus merges the listing once.
	ls := c.ls("/data", false)
	if len(ls) != 2 || ls["one"].Length != 100 || ls["one"].Mode != 0o640 || !ls["deep"].Folder {
		t.Fatalf("ls /data: %v", ls)
	}
	must(os.WriteFile(filepath.Join(ufsDir, "data/three"), []byte("abc"), 0o644))
	if ls := c.ls("/data", false); len(ls) != 2 {
		t.Fatalf("listing was loaded again without sync: %v", ls)
	}
	// sync_ufs picks up new files, changed lengths and deletions.
	must(os.WriteFile(filepath.Join(ufsDir, "data/one"), make([]byte, 5), 0o640))
	must(os.RemoveAll(filepath.Join(ufsDir, "data/deep")))
	ls = c.ls("/data", true)
	if len(ls) != 2 || ls["three"].Length != 3 || ls["one"].Length != 5 || ls["deep"] != nil {
		t.Fatalf("ls /data with sync: %v", ls)
	}
	// Files written through Alcove but not persisted survive a sync.
	c.writeFile("/data/cached", 4, apiv1.WriteType_MUST_CACHE)
	if ls := c.ls("/data", true); ls["cached"] == nil {
		t.Fatal("sync dropped an unpersisted file")
	}
	// Loading survives a restart without reloading.
	c = c.restart()
	if got := c.stat("/data/three"); got.Length != 3 {
		t.Fatalf("after restart: %+v", got)
	}
}

func TestMountUnmount(t *testing.T) {
	c := newCluster(t)
	ext := t.TempDir()
	if err := os.WriteFile(filepath.Join(ext, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mkdir("/mnt")
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/mnt/ext", UfsUri: "file://" + ext, ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, func() error {
		_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/mnt/ext2", UfsUri: filepath.Join(ext, "sub")})
		return err
	}(), codes.NotFound, "mount missing UFS subdir")
	if err := os.Mkdir(filepath.Join(ext, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantCode(t, func() error {
		_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/mnt/ext2", UfsUri: filepath.Join(ext, "sub")})
		return err
	}(), codes.FailedPrecondition, "mount overlapping UFS")
	wantCode(t, func() error {
		_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/mnt/ext", UfsUri: t.TempDir()})
		return err
	}(), codes.AlreadyExists, "mount twice")

	fi := c.stat("/mnt/ext/f")
	if fi.Length != 5 || fi.UfsPath != "file://"+ext+"/f" || fi.MountId == c.stat("/mnt").MountId {
		t.Fatalf("file under mount: %+v", fi)
	}
	if mp := c.stat("/mnt/ext"); !mp.MountPoint {
		t.Fatal("mount point not flagged")
	}
	tbl, err := c.fs.GetMountTable(c.ctx, &apiv1.GetMountTableRequest{})
	if err != nil || len(tbl.MountPoints) != 2 {
		t.Fatalf("mount table: %v %v", tbl, err)
	}
	// Read-only: no creation, no UFS delete.
	wantCode(t, func() error {
		_, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/mnt/ext/new"})
		return err
	}(), codes.PermissionDenied, "create under read-only mount")
	wantCode(t, func() error { _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/mnt/ext/f"}); return err }(), codes.PermissionDenied, "delete under read-only mount")
	// No renames across mounts, onto or of a mount point; no deleting it.
	c.writeFile("/mnt/local", 1, apiv1.WriteType_MUST_CACHE)
	wantCode(t, func() error {
		_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/mnt/local", Dst: "/mnt/ext/local"})
		return err
	}(), codes.InvalidArgument, "rename across mounts")
	wantCode(t, func() error {
		_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/mnt/ext", Dst: "/mnt/moved"})
		return err
	}(), codes.FailedPrecondition, "rename mount point")
	wantCode(t, func() error {
		_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/mnt/local", Dst: "/mnt/ext", Overwrite: true})
		return err
	}(), codes.FailedPrecondition, "rename onto mount point")
	wantCode(t, func() error {
		_, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/mnt/ext", Recursive: true})
		return err
	}(), codes.FailedPrecondition, "delete mount point")
	wantCode(t, func() error {
		_, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/mnt", Recursive: true})
		return err
	}(), codes.FailedPrecondition, "delete dir holding a mount")
	wantCode(t, func() error {
		_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/mnt", Dst: "/mnt2"})
		return err
	}(), codes.FailedPrecondition, "rename dir holding a mount")

	// Mount survives restart; unmount drops metadata but not the UFS.
	c = c.restart()
	if c.stat("/mnt/ext/f").Length != 5 {
		t.Fatal("mount lost on restart")
	}
	if _, err := c.fs.Unmount(c.ctx, &apiv1.UnmountRequest{AlcovePath: "/mnt/ext"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/mnt/ext/f"}); return err }(), codes.NotFound, "stat after unmount")
	if !exists(filepath.Join(ext, "f")) {
		t.Fatal("unmount touched the UFS")
	}
	// An empty existing directory can be mounted over.
	c.mkdir("/mnt/empty")
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/mnt/empty", UfsUri: ext}); err != nil {
		t.Fatal(err)
	}
	if ls := c.ls("/mnt/empty", false); ls["f"] == nil {
		t.Fatalf("listing of mounted dir: %v", ls)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	c := newCluster(t)
	c.mkdir("/keep/dir")
	f := c.writeFile("/keep/f", 2<<20, apiv1.WriteType_MUST_CACHE)
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/keep/f", Pinned: ptr(true), TtlMs: ptr(int64(1 << 40))}); err != nil {
		t.Fatal(err)
	}
	open, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/keep/open"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/keep/dir"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.meta.Checkpoint(c.ctx, &apiv1.CheckpointRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/keep/f", Dst: "/keep/g"}); err != nil {
		t.Fatal(err)
	}
	count := c.m.inodeCount()

	for range 2 {
		c = c.restart()
		g := c.stat("/keep/g")
		if g.FileId != f.FileId || g.Length != 2<<20 || !g.Pinned || g.TtlMs != 1<<40 {
			t.Fatalf("after restart: %+v", g)
		}
		if c.m.inodeCount() != count {
			t.Fatalf("inode count %d, want %d (double apply?)", c.m.inodeCount(), count)
		}
		wantCode(t, func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/keep/dir"}); return err }(), codes.NotFound, "deleted dir")
	}
	// The open file can still be completed; new ids do not collide.
	if _, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/keep/open", FileId: open.FileInfo.FileId, Length: 1}); err != nil {
		t.Fatal(err)
	}
	n := c.writeFile("/keep/new", 1, apiv1.WriteType_MUST_CACHE)
	if n.FileId <= open.FileInfo.FileId {
		t.Fatalf("new id %d not after %d", n.FileId, open.FileInfo.FileId)
	}
	info, err := c.meta.GetMasterInfo(c.ctx, &apiv1.GetMasterInfoRequest{})
	if err != nil || !info.IsLeader || info.InodeCount != count+1 || info.LeaderAddress != c.m.Addr() || info.JournalLastIndex == 0 {
		t.Fatalf("master info: %+v %v", info, err)
	}
}

func TestLoadLargeDirectory(t *testing.T) {
	ufsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(ufsDir, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		if err := os.WriteFile(filepath.Join(ufsDir, "big", fmt.Sprintf("f%04d", i)), []byte{1}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startMaster(t, t.TempDir(), ufsDir)
	start := time.Now()
	if ls := c.ls("/big", false); len(ls) != n {
		t.Fatalf("listed %d, want %d", len(ls), n)
	}
	t.Logf("loaded %d files in %v", n, time.Since(start))
	if c.m.inodeCount() != n+2 {
		t.Fatalf("inode count %d", c.m.inodeCount())
	}
}
