package master

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

func ptr[T any](v T) *T { return &v }

func TestFileSystemErrors(t *testing.T) {
	c := newCluster(t)
	c.mkdir("/dir/sub")
	c.writeFile("/dir/file", 10, apiv1.WriteType_MUST_CACHE)
	created, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/dir/open"})
	if err != nil {
		t.Fatal(err)
	}
	openID := created.FileInfo.FileId

	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"stat relative path", func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "dir"}); return err }, codes.InvalidArgument},
		{"stat empty path", func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{}); return err }, codes.InvalidArgument},
		{"stat .. escaping root", func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/../etc"}); return err }, codes.InvalidArgument},
		{"stat long name", func() error {
			_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/" + strings.Repeat("x", 300)})
			return err
		}, codes.InvalidArgument},
		{"stat missing", func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/nope"}); return err }, codes.NotFound},
		{"stat under a file", func() error {
			_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/dir/file/x"})
			return err
		}, codes.FailedPrecondition},
		{"list missing", func() error { _, err := c.fs.ListStatus(c.ctx, &apiv1.ListStatusRequest{Path: "/nope"}); return err }, codes.NotFound},
		{"mkdir existing", func() error {
			_, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: "/dir"})
			return err
		}, codes.AlreadyExists},
		{"mkdir existing allowed", func() error {
			_, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: "/dir", AllowExists: true})
			return err
		}, codes.OK},
		{"mkdir over file allowed-exists", func() error {
			_, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: "/dir/file", AllowExists: true})
			return err
		}, codes.AlreadyExists},
		{"mkdir without parent", func() error {
			_, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: "/a/b"})
			return err
		}, codes.NotFound},
		{"mkdir under file", func() error {
			_, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: "/dir/file/x", Recursive: true})
			return err
		}, codes.FailedPrecondition},
		{"create existing", func() error {
			_, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/dir/file"})
			return err
		}, codes.AlreadyExists},
		{"create on directory", func() error {
			_, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/dir/sub", Overwrite: true})
			return err
		}, codes.AlreadyExists},
		{"create root", func() error { _, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/"}); return err }, codes.FailedPrecondition},
		{"create without parent", func() error { _, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/x/y"}); return err }, codes.NotFound},
		{"create bad block size", func() error {
			_, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/dir/bs", BlockSizeBytes: -1})
			return err
		}, codes.InvalidArgument},
		{"create bad write type", func() error {
			_, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/dir/wt", WriteType: 99})
			return err
		}, codes.InvalidArgument},
		{"complete directory", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/sub", FileId: c.stat("/dir/sub").FileId})
			return err
		}, codes.FailedPrecondition},
		{"complete wrong id", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/open", FileId: openID + 100})
			return err
		}, codes.FailedPrecondition},
		{"complete negative length", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/open", FileId: openID, Length: -5})
			return err
		}, codes.InvalidArgument},
		{"complete missing", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/none", FileId: 1})
			return err
		}, codes.NotFound},
		{"complete done file other length", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/file", FileId: c.stat("/dir/file").FileId, Length: 11})
			return err
		}, codes.FailedPrecondition},
		{"complete done file same length", func() error {
			_, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/dir/file", FileId: c.stat("/dir/file").FileId, Length: 10})
			return err
		}, codes.OK},
		{"delete root", func() error {
			_, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/", Recursive: true})
			return err
		}, codes.FailedPrecondition},
		{"delete missing", func() error { _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/nope"}); return err }, codes.NotFound},
		{"delete non-empty", func() error { _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/dir"}); return err }, codes.FailedPrecondition},
		{"rename missing", func() error { _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/nope", Dst: "/x"}); return err }, codes.NotFound},
		{"rename into itself", func() error {
			_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/dir", Dst: "/dir/sub/dir"})
			return err
		}, codes.InvalidArgument},
		{"rename root", func() error { _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/", Dst: "/x"}); return err }, codes.InvalidArgument},
		{"rename onto existing", func() error {
			_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/dir/open", Dst: "/dir/file"})
			return err
		}, codes.AlreadyExists},
		{"rename file onto dir", func() error {
			_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/dir/file", Dst: "/dir/sub", Overwrite: true})
			return err
		}, codes.FailedPrecondition},
		{"rename missing dst parent", func() error {
			_, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/dir/file", Dst: "/q/r"})
			return err
		}, codes.NotFound},
		{"setattr missing", func() error {
			_, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/nope", Pinned: ptr(true)})
			return err
		}, codes.NotFound},
		{"setattr negative ttl", func() error {
			_, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/dir", TtlMs: ptr(int64(-1))})
			return err
		}, codes.InvalidArgument},
		{"free unpersisted", func() error { _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/dir/file"}); return err }, codes.FailedPrecondition},
		{"free missing", func() error { _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/nope"}); return err }, codes.NotFound},
		{"unmount root", func() error { _, err := c.fs.Unmount(c.ctx, &apiv1.UnmountRequest{AlcovePath: "/"}); return err }, codes.FailedPrecondition},
		{"unmount non-mount", func() error { _, err := c.fs.Unmount(c.ctx, &apiv1.UnmountRequest{AlcovePath: "/dir"}); return err }, codes.NotFound},
		{"mount missing ufs", func() error {
			_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/m", UfsUri: "file:///definitely/not/here"})
			return err
		}, codes.NotFound},
		{"mount overlapping root ufs", func() error {
			_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/m", UfsUri: c.ufs})
			return err
		}, codes.FailedPrecondition},
		{"mount unknown scheme", func() error {
			_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/m", UfsUri: "nope://x/y"})
			return err
		}, codes.InvalidArgument},
		{"mount on non-empty dir", func() error {
			_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/dir", UfsUri: t.TempDir()})
			return err
		}, codes.FailedPrecondition},
		{"mount without parent", func() error {
			_, err := c.fs.Mount(c.ctx, &apiv1.MountRequest{AlcovePath: "/p/q", UfsUri: t.TempDir()})
			return err
		}, codes.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantCode(t, err, tc.want, tc.name)
			if err != nil && meta.FromStatus(err) == nil {
				t.Fatal("FromStatus lost the error")
			}
		})
	}
	// Error messages name the path.
	_, err = c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/nope/deeper"})
	if !strings.Contains(err.Error(), "/nope/deeper") {
		t.Fatalf("NotFound does not name the path: %v", err)
	}
}

func TestCreateCompleteListRenameDelete(t *testing.T) {
	c := newCluster(t)
	fi := c.writeFile("/a/b/f1", 3<<20+5, apiv1.WriteType_MUST_CACHE)
	if !fi.Completed || fi.Length != 3<<20+5 || len(fi.BlockIds) != 4 || fi.BlockSizeBytes != 1<<20 {
		t.Fatalf("completed file info: %+v", fi)
	}
	for i, id := range fi.BlockIds {
		if id != meta.BlockID(fi.FileId, int64(i)) || fi.FileBlockInfos[i].Offset != int64(i)<<20 {
			t.Fatalf("block %d: id %d offset %d", i, id, fi.FileBlockInfos[i].Offset)
		}
	}
	if fi.FileBlockInfos[3].BlockInfo.Length != 5 {
		t.Fatalf("last block length %d", fi.FileBlockInfos[3].BlockInfo.Length)
	}
	if fi.PersistenceState != apiv1.PersistenceState_LOST || fi.InAlcovePercentage != 0 {
		t.Fatalf("MUST_CACHE file with no cached block: state %v %d%%", fi.PersistenceState, fi.InAlcovePercentage)
	}
	if fi.UfsPath != filepath.Join(c.ufs, "a/b/f1") || fi.MountId == 0 || fi.Mode != 0o644 || fi.WriteType != apiv1.WriteType_MUST_CACHE {
		t.Fatalf("file info fields: ufs %q mount %d mode %o wt %v", fi.UfsPath, fi.MountId, fi.Mode, fi.WriteType)
	}

	// Defaults: 64 MiB blocks, ASYNC_THROUGH, incomplete until completed.
	r, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/a/def"})
	if err != nil {
		t.Fatal(err)
	}
	if r.FileInfo.BlockSizeBytes != meta.DefaultBlockSize || r.FileInfo.WriteType != meta.DefaultWriteType || r.FileInfo.Completed {
		t.Fatalf("defaults: %+v", r.FileInfo)
	}
	done, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/a/def", FileId: r.FileInfo.FileId, Length: 100})
	if err != nil || done.FileInfo.PersistenceState != apiv1.PersistenceState_LOST {
		// ASYNC_THROUGH → TO_BE_PERSISTED; no cached block yet, so reported LOST.
		t.Fatalf("complete async: %v %v", done.GetFileInfo().GetPersistenceState(), err)
	}
	through := c.writeFile("/a/through", 7, apiv1.WriteType_THROUGH)
	if through.PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("through file: %v", through.PersistenceState)
	}
	if c.stat("/a").PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatal("parent of a persisted file not persisted")
	}
	// Overwrite replaces the file with a new id.
	ow, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/a/through", Overwrite: true, WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil || ow.FileInfo.FileId == through.FileId {
		t.Fatalf("overwrite: %v", err)
	}
	if exists(filepath.Join(c.ufs, "a/through")) {
		t.Fatal("overwritten file's stale UFS copy kept")
	}

	ls := c.ls("/a", false)
	if len(ls) != 3 || !ls["b"].Folder || ls["def"].Length != 100 {
		t.Fatalf("ls /a: %v", ls)
	}
	rec, err := c.fs.ListStatus(c.ctx, &apiv1.ListStatusRequest{Path: "/", Recursive: true})
	if err != nil || len(rec.FileInfos) != 5 {
		t.Fatalf("recursive ls: %d %v", len(rec.GetFileInfos()), err)
	}
	if one := c.ls("/a/def", false); len(one) != 1 || one["def"] == nil {
		t.Fatalf("ls of a file lists the file: %v", one)
	}

	// Rename a file, a directory, and overwrite.
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/a/b/f1", Dst: "/a/f1"}); err != nil {
		t.Fatal(err)
	}
	if got := c.stat("/a/f1"); got.FileId != fi.FileId {
		t.Fatalf("renamed file id %d, want %d", got.FileId, fi.FileId)
	}
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/a", Dst: "/z"}); err != nil {
		t.Fatal(err)
	}
	c.stat("/z/b")
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/z/f1", Dst: "/z/def", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if c.stat("/z/def").FileId != fi.FileId {
		t.Fatal("overwrite rename did not replace")
	}
	// Persisted renames happen in the UFS too.
	c.writeFile("/z/p", 3, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: "/z/p", Dst: "/z/b/p2"}); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(c.ufs, "z/b/p2")) || exists(filepath.Join(c.ufs, "z/p")) {
		t.Fatal("UFS rename not done")
	}

	// Delete: alcove-only keeps the UFS copy (and it loads back), normal delete removes it.
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/z/b/p2", AlcoveOnly: true}); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(c.ufs, "z/b/p2")) {
		t.Fatal("alcove-only delete removed the UFS copy")
	}
	if got := c.stat("/z/b/p2"); got.PersistenceState != apiv1.PersistenceState_PERSISTED || got.Length != 3 {
		t.Fatalf("reloaded: %+v", got)
	}
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/z", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(c.ufs, "z")) {
		t.Fatal("recursive delete left the UFS directory")
	}
	wantCode(t, func() error { _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/z"}); return err }(), codes.NotFound, "stat deleted")
	if n := c.m.inodeCount(); n != 1 {
		t.Fatalf("inode count after deleting everything: %d", n)
	}
}

func TestSetAttributePinTTL(t *testing.T) {
	c := newCluster(t)
	c.writeFile("/d/x", 1, apiv1.WriteType_CACHE_THROUGH)
	c.writeFile("/d/e/y", 1, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/d", Pinned: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if !c.stat("/d/e/y").Pinned || !c.stat("/d/x").Pinned {
		t.Fatal("pinning a directory did not pin its files")
	}
	if !c.writeFile("/d/new", 1, apiv1.WriteType_CACHE_THROUGH).Pinned {
		t.Fatal("file created under a pinned dir not pinned")
	}
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/d", Mode: ptr(uint32(0o700)), Owner: ptr("bob"), Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if y := c.stat("/d/e/y"); y.Mode != 0o700 || y.Owner != "bob" {
		t.Fatalf("recursive chmod/chown: %o %q", y.Mode, y.Owner)
	}
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/d/x", Mode: ptr(uint32(0o600))}); err != nil {
		t.Fatal(err)
	}
	if c.stat("/d/x").Mode != 0o600 || c.stat("/d/e/y").Mode != 0o700 {
		t.Fatal("non-recursive chmod")
	}

	// TTL delete (default action) removes the file and its UFS copy.
	c.writeFile("/t/gone", 1, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/t/gone", TtlMs: ptr(int64(1))}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ttl delete", 5e9, func() bool {
		_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/t/gone"})
		return code(err) == codes.NotFound
	})
	// TTL free keeps the file but clears the TTL.
	c.writeFile("/t/freed", 1, apiv1.WriteType_CACHE_THROUGH)
	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/t/freed", TtlMs: ptr(int64(1)), TtlAction: ptr(apiv1.TtlAction_TTL_FREE)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ttl free", 5e9, func() bool { return c.stat("/t/freed").TtlMs == 0 })
	// TTL at creation.
	if _, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/t/short", TtlMs: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ttl delete of created file", 5e9, func() bool {
		_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/t/short"})
		return code(err) == codes.NotFound
	})
}
