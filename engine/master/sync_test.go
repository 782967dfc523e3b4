package master

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/ufs"
)

// TestMountConfigAndRedaction: workers get a mount's properties in clear by
// mount id; clients see secrets redacted in the mount table.
func TestMountConfigAndRedaction(t *testing.T) {
	c := newCluster(t)
	ext := t.TempDir()
	const interval = "alluxio.user.file.metadata.sync.interval"
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/ext", UfsUri: ext, Properties: map[string]string{interval: "1h"}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, func() error {
		_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/bad", UfsUri: t.TempDir(), Properties: map[string]string{"s3a.secretKey": "x"}})
		return err
	}(), codes.InvalidArgument, "an option the file UFS does not know")
	id := c.stat("/ext").MountId
	cfg, err := c.block.GetMountConfig(c.ctx, &apiv1.GetMountConfigRequest{MountId: id})
	if err != nil || cfg.Mount.UfsUri != ext || cfg.Mount.Properties[interval] != "1h" {
		t.Fatalf("GetMountConfig = %v, %v", cfg, err)
	}
	wantCode(t, func() error {
		_, err := c.block.GetMountConfig(c.ctx, &apiv1.GetMountConfigRequest{MountId: 999})
		return err
	}(), codes.NotFound, "unknown mount id")

	// Secrets are redacted for clients (one rule, ufs.IsSecret).
	red := ufs.Redact(map[string]string{"s3a.secretKey": "S", "s3a.accessKeyId": "A", "aws.secretKey": "S", "alluxio.underfs.s3.endpoint": "http://e"})
	if red["s3a.secretKey"] != ufs.Redacted || red["s3a.accessKeyId"] != ufs.Redacted || red["aws.secretKey"] != ufs.Redacted || red["alluxio.underfs.s3.endpoint"] != "http://e" {
		t.Fatalf("Redact = %v", red)
	}
}

// TestRootOptionsFromConfig: the configured root options replace the stored
// ones at start (rotated credentials take effect on restart).
func TestRootOptionsFromConfig(t *testing.T) {
	c := newCluster(t)
	const key = "alluxio.user.file.metadata.sync.interval"
	c = c.restart(func(cfg *Config) { cfg.RootUFSProperties = map[string]string{key: "5s"} })
	cfg, err := c.block.GetMountConfig(c.ctx, &apiv1.GetMountConfigRequest{MountId: c.stat("/").MountId})
	if err != nil || cfg.Mount.Properties[key] != "5s" {
		t.Fatalf("root mount config = %v, %v", cfg, err)
	}
}

// TestMetadataSyncInterval: with an interval, accesses re-read UFS metadata
// by themselves; a changed file gets a new inode (its old blocks are freed).
func TestMetadataSyncInterval(t *testing.T) {
	c := newCluster(t)
	ufsDir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(ufsDir, "f"), []byte("one"), 0o644))
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/never", UfsUri: ufsDir}); err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	must(os.WriteFile(filepath.Join(dir2, "f"), []byte("one"), 0o644))
	if _, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/always", UfsUri: dir2,
		Properties: map[string]string{"alluxio.user.file.metadata.sync.interval": "0"}}); err != nil {
		t.Fatal(err)
	}
	c.ls("/never", false) // the listings are loaded once
	c.ls("/always", false)
	old := map[string]*apiv1.FileInfo{"/never/f": c.stat("/never/f"), "/always/f": c.stat("/always/f")}
	w := c.register("w1:1", "n1")
	for _, fi := range old {
		c.commit(w, fi, "MEM")
	}
	// Behind Alcove's back: change f, add g, in both.
	later := time.Now().Add(2 * time.Second)
	for _, d := range []string{ufsDir, dir2} {
		must(os.WriteFile(filepath.Join(d, "f"), []byte("changed"), 0o644))
		must(os.Chtimes(filepath.Join(d, "f"), later, later))
		must(os.WriteFile(filepath.Join(d, "g"), []byte("new"), 0o644))
	}
	if fi := c.stat("/never/f"); fi.FileId != old["/never/f"].FileId || fi.Length != 3 {
		t.Fatalf("without an interval metadata changed: %+v", fi)
	}
	if ls := c.ls("/never", false); ls["g"] != nil {
		t.Fatal("without an interval the listing was re-read")
	}
	fi := c.stat("/always/f")
	if fi.FileId == old["/always/f"].FileId || fi.Length != 7 || fi.InAlcovePercentage != 0 {
		t.Fatalf("with interval 0 a changed file must get a new inode with nothing cached: %+v", fi)
	}
	if ls := c.ls("/always", false); ls["g"] == nil {
		t.Fatal("with interval 0 the listing was not re-read")
	}
	// The old version's block is freed on the worker.
	hb := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w})
	if !containsID(hb.FreeBlockIds, old["/always/f"].BlockIds[0]) {
		t.Fatalf("blocks of the changed file not freed: %v", hb.FreeBlockIds)
	}
	// A request's interval wins over the mount's: -1 never.
	must(os.WriteFile(filepath.Join(dir2, "f"), []byte("changed again"), 0o644))
	never := int64(-1)
	r, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/always/f", SyncIntervalMs: &never})
	if err != nil || r.FileInfo.Length != 7 {
		t.Fatalf("request interval -1: %+v, %v", r.GetFileInfo(), err)
	}
	// Deleted behind Alcove's back: gone on the next access.
	must(os.Remove(filepath.Join(dir2, "f")))
	wantCode(t, func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/always/f"}); return err }(), codes.NotFound, "deleted in the UFS")
	// fs loadMetadata: sync_ufs on one file of the never-syncing mount.
	r, err = c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/never/f", SyncUfs: true})
	if err != nil || r.FileInfo.Length != 7 {
		t.Fatalf("GetStatus sync_ufs: %+v, %v", r.GetFileInfo(), err)
	}
}

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TestSyncDoesNotReplaceNewFile: a sync decided against an old inode must
// not replace a file written at that path meanwhile.
func TestSyncDoesNotReplaceNewFile(t *testing.T) {
	c := newCluster(t)
	old := c.writeFile("/f", 3, apiv1.WriteType_CACHE_THROUGH)
	oldIno := &apiv1.Inode{Id: old.FileId, ParentId: RootID}
	fresh := c.writeFile("/f2", 4, apiv1.WriteType_MUST_CACHE)
	_ = fresh
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/f2", Dst: "/f", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	_, err := c.m.apply(c.ctx, replaceEntry(oldIno, &apiv1.Inode{Name: "f", Length: 9, Completed: true, PersistenceState: apiv1.PersistenceState_PERSISTED}))
	if code(err) == codes.OK && err == nil {
		t.Fatal("a stale sync replaced the file written meanwhile")
	}
	if got := c.stat("/f"); got.FileId != fresh.FileId || got.Length != 4 {
		t.Fatalf("/f = %+v, want the renamed file", got)
	}
}
