package vfs

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
	"github.com/alcove-io/alcove/test/prereq"
)

// TestPOSIX runs every operation and errno against the VFS in process
// (the kernel-only parts stay in engine/fuse's TestPOSIX).
func TestPOSIX(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx

	t.Run("create write read stat", func(t *testing.T) {
		data := randData(1, 3<<20+123)
		f.mustWrite("/a.bin", data, 0o640)
		mustEqual(t, "read back", f.mustRead("/a.bin"), data)
		a, e := f.stat("/a.bin")
		if e != 0 || a.Size != uint64(len(data)) || a.Mode != syscall.S_IFREG|0o640 {
			t.Fatalf("stat: %+v %v", a, e)
		}
		info, err := f.c.GetStatus(ctx, "/a.bin")
		if err != nil || info.GetLength() != int64(len(data)) || !info.GetCompleted() {
			t.Fatalf("alcove sees %v, %v", info, err)
		}
		// A file written by a client: its inode number is its Alcove id.
		f.put("/byclient", []byte("c"))
		cinfo, _ := f.c.GetStatus(ctx, "/byclient")
		if ca, _ := f.stat("/byclient"); ca.Ino != uint64(cinfo.GetFileId()) {
			t.Fatalf("inode %d, want the Alcove file id %d", ca.Ino, cinfo.GetFileId())
		}
		// A commit gives the file a new Alcove id; the inode number stays.
		f.mustWrite("/a.bin", data, 0o640)
		if a2, _ := f.stat("/a.bin"); a2.Ino != a.Ino {
			t.Fatalf("inode changed from %d to %d on rewrite", a.Ino, a2.Ino)
		}
		// The committed file is cached on this node: passthrough; a
		// writer beside a passthrough reader: ETXTBSY.
		r, e := f.open("/a.bin", os.O_RDONLY, 0)
		if e != 0 {
			t.Fatal(e)
		}
		if _, ok := r.h.PassthroughFd(); !ok {
			t.Fatal("a locally cached file was not opened for passthrough")
		}
		_, e = f.open("/a.bin", os.O_WRONLY, 0)
		checkErrno(t, "open for write beside a passthrough reader", e, syscall.ETXTBSY)
		if e := r.close(); e != 0 {
			t.Fatal(e)
		}
		w, e := f.open("/a.bin", os.O_WRONLY, 0)
		if e != 0 {
			t.Fatalf("open for write after the reader closed: %v", e)
		}
		w.close()
	})

	t.Run("append", func(t *testing.T) {
		f.mustWrite("/log.txt", []byte("one\n"), 0o644)
		for _, line := range []string{"two\n", "three\n"} {
			fl, e := f.open("/log.txt", os.O_WRONLY|os.O_APPEND, 0)
			if e != 0 {
				t.Fatal(e)
			}
			a, _ := f.stat("/log.txt")
			if e := fl.writeAt([]byte(line), int64(a.Size)); e != 0 {
				t.Fatal(e)
			}
			if e := fl.close(); e != 0 {
				t.Fatal(e)
			}
		}
		mustEqual(t, "appended", f.mustRead("/log.txt"), []byte("one\ntwo\nthree\n"))
	})

	t.Run("overwrite in the middle and read after write", func(t *testing.T) {
		data := randData(2, 2<<20)
		f.mustWrite("/mid.bin", data, 0o644)
		fl, e := f.open("/mid.bin", os.O_RDWR, 0)
		if e != 0 {
			t.Fatal(e)
		}
		patch := bytes.Repeat([]byte("X"), 5000)
		if e := fl.writeAt(patch, 1<<20-100); e != 0 {
			t.Fatal(e)
		}
		copy(data[1<<20-100:], patch)
		// Read after write, before close: served from the stage.
		got := make([]byte, 6000)
		if _, e := fl.readAt(got, 1<<20-600); e != 0 {
			t.Fatal(e)
		}
		mustEqual(t, "read through the stage", got, data[1<<20-600:1<<20+5400])
		if e := fl.h.Fsync(ctx); e != 0 {
			t.Fatal(e)
		}
		// fsync committed: Alcove itself has the new content already.
		r, err := f.c.OpenFile(ctx, "/mid.bin", 0)
		if err != nil {
			t.Fatal(err)
		}
		all := make([]byte, len(data)+1)
		n, _ := r.ReadAt(all, 0)
		r.Close()
		mustEqual(t, "alcove after fsync", all[:n], data)
		if e := fl.close(); e != 0 {
			t.Fatal(e)
		}
		mustEqual(t, "after overwrite", f.mustRead("/mid.bin"), data)
	})

	t.Run("truncate", func(t *testing.T) {
		data := randData(3, 100000)
		f.mustWrite("/trunc.bin", data, 0o644)
		n, _ := f.walk("/trunc.bin")
		size := func(sz uint64, h *Handle) {
			t.Helper()
			var a Attr
			if e := f.v.Setattr(ctx, f.who, n, SetAttrIn{Size: &sz, Handle: h}, &a); e != 0 || a.Size != sz {
				t.Fatalf("truncate to %d: %v, size %d", sz, e, a.Size)
			}
		}
		// truncate(2) without an open file is durable on return.
		size(1000, nil)
		if info, _ := f.c.GetStatus(ctx, "/trunc.bin"); info.GetLength() != 1000 {
			t.Fatalf("alcove length %d after truncate(2), want 1000", info.GetLength())
		}
		mustEqual(t, "shrunk", f.mustRead("/trunc.bin"), data[:1000])
		size(5000, nil)
		want := append(append([]byte{}, data[:1000]...), make([]byte, 4000)...)
		mustEqual(t, "grown", f.mustRead("/trunc.bin"), want)
		// ftruncate commits with the file.
		fl, e := f.open("/trunc.bin", os.O_RDWR, 0)
		if e != 0 {
			t.Fatal(e)
		}
		size(10, fl.h)
		if info, _ := f.c.GetStatus(ctx, "/trunc.bin"); info.GetLength() != 5000 {
			t.Fatalf("alcove length %d before close, want 5000", info.GetLength())
		}
		fl.close()
		if info, _ := f.c.GetStatus(ctx, "/trunc.bin"); info.GetLength() != 10 {
			t.Fatalf("alcove length %d after close, want 10", info.GetLength())
		}
		fl, e = f.open("/trunc.bin", os.O_WRONLY|os.O_TRUNC, 0)
		if e != 0 {
			t.Fatal(e)
		}
		fl.close()
		if a, _ := f.stat("/trunc.bin"); a.Size != 0 {
			t.Fatalf("O_TRUNC left %d bytes", a.Size)
		}
	})

	t.Run("mkdir readdir rename unlink rmdir", func(t *testing.T) {
		root := f.v.Root()
		var a Attr
		d, e := f.v.Mkdir(ctx, f.who, root, "dir", 0o750, &a)
		if e != 0 || a.Mode != syscall.S_IFDIR|0o750 {
			t.Fatalf("mkdir: %v %o", e, a.Mode)
		}
		for _, n := range []string{"x", "y", "z"} {
			f.mustWrite("/dir/"+n, []byte(n), 0o644)
		}
		ents, e := f.v.Readdir(ctx, f.who, d)
		if e != 0 {
			t.Fatal(e)
		}
		var names []string
		for _, en := range ents {
			names = append(names, en.Name)
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "x,y,z" {
			t.Fatalf("readdir: %v", names)
		}
		z, _ := f.walk("/dir/z")
		// rename over an existing file
		if e := f.v.Rename(ctx, f.who, d, "x", d, "y", 0); e != 0 {
			t.Fatal(e)
		}
		mustEqual(t, "renamed over", f.mustRead("/dir/y"), []byte("x"))
		_, e = f.stat("/dir/x")
		checkErrno(t, "source after rename", e, syscall.ENOENT)
		// rename a directory: nodes inside follow (identity by inode)
		if e := f.v.Rename(ctx, f.who, root, "dir", root, "dir2", 0); e != 0 {
			t.Fatal(e)
		}
		if p, _ := z.path(); p != "/dir2/z" {
			t.Fatalf("a node inside a renamed directory has path %q", p)
		}
		h, _, e := f.v.Open(ctx, f.who, z, syscall.O_RDONLY)
		if e != 0 {
			t.Fatalf("open a node looked up before its directory moved: %v", e)
		}
		h.Release(ctx)
		mustEqual(t, "in renamed dir", f.mustRead("/dir2/z"), []byte("z"))
		checkErrno(t, "rmdir non-empty", f.v.Rmdir(ctx, f.who, root, "dir2"), syscall.ENOTEMPTY)
		for _, n := range []string{"y", "z"} {
			if e := f.v.Unlink(ctx, f.who, d, n); e != 0 {
				t.Fatal(e)
			}
		}
		// An unlinked node is no longer in the namespace; something that
		// still holds it gets its attributes with no links (like tmpfs).
		if e := f.v.Getattr(ctx, f.who, z, &a); e != 0 || a.Nlink != 0 || a.Size != 1 {
			t.Fatalf("getattr of an unlinked node: %v nlink %d size %d", e, a.Nlink, a.Size)
		}
		if e := f.v.Rmdir(ctx, f.who, root, "dir2"); e != 0 {
			t.Fatal(e)
		}
		_, e = f.stat("/dir2")
		checkErrno(t, "removed dir", e, syscall.ENOENT)
	})

	t.Run("chmod chown", func(t *testing.T) {
		prereq.Root(t) // a chown to another user
		f.mustWrite("/perm", []byte("p"), 0o644)
		n, _ := f.walk("/perm")
		mode, uid, gid := uint32(0o600), uint32(1234), uint32(5678)
		var a Attr
		if e := f.v.Setattr(ctx, f.who, n, SetAttrIn{Mode: &mode, Uid: &uid, Gid: &gid}, &a); e != 0 {
			t.Fatal(e)
		}
		if a.Mode != syscall.S_IFREG|0o600 || a.Uid != 1234 || a.Gid != 5678 {
			t.Fatalf("mode %o uid %d gid %d", a.Mode, a.Uid, a.Gid)
		}
		info, _ := f.c.GetStatus(ctx, "/perm")
		if info.GetMode()&0o777 != 0o600 || info.GetOwner() != "1234" || info.GetGroup() != "5678" {
			t.Fatalf("alcove metadata: mode %o owner %q group %q", info.GetMode(), info.GetOwner(), info.GetGroup())
		}
		// A rewrite keeps owner and mode.
		f.mustWrite("/perm", []byte("again"), 0)
		if a, _ := f.stat("/perm"); a.Mode != syscall.S_IFREG|0o600 || a.Uid != 1234 {
			t.Fatalf("after rewrite: mode %o uid %d", a.Mode, a.Uid)
		}
	})

	t.Run("statfs", func(t *testing.T) {
		var st Statfs
		if e := f.v.Statfs(ctx, &st); e != 0 {
			t.Fatal(e)
		}
		if total := st.Blocks * uint64(st.Bsize); total != 1<<30 {
			t.Fatalf("statfs capacity %d, want the worker's 1 GiB", total)
		}
		if st.NameLen != 255 {
			t.Fatalf("namelen %d", st.NameLen)
		}
	})

	t.Run("concurrent readers", func(t *testing.T) {
		data := randData(4, 5<<20)
		f.put("/shared.bin", data)
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, e := f.readFile("/shared.bin")
				switch {
				case e != 0:
					errs <- e.Error()
				case !bytes.Equal(got, data):
					errs <- "content differs"
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("errnos", func(t *testing.T) {
		root := f.v.Root()
		long := strings.Repeat("n", 256)
		var a Attr
		_, e := f.stat("/" + long)
		checkErrno(t, "stat long name", e, syscall.ENAMETOOLONG)
		checkErrno(t, "create long name", f.writeFile("/"+long, nil, 0o644), syscall.ENAMETOOLONG)
		_, e = f.v.Mkdir(ctx, f.who, root, long, 0o755, &a)
		checkErrno(t, "mkdir long name", e, syscall.ENAMETOOLONG)
		_, e = f.stat("/nope")
		checkErrno(t, "stat missing", e, syscall.ENOENT)
		_, e = f.readFile("/nope/deeper")
		checkErrno(t, "open under missing", e, syscall.ENOENT)
		ed, _ := f.v.Mkdir(ctx, f.who, root, "ed", 0o755, &a)
		f.mustWrite("/ef", []byte("f"), 0o644)
		_, e = f.v.Mkdir(ctx, f.who, root, "ed", 0o755, &a)
		checkErrno(t, "mkdir existing", e, syscall.EEXIST)
		_, _, _, e = f.v.Create(ctx, f.who, root, "ef", syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644, &a)
		checkErrno(t, "O_EXCL existing", e, syscall.EEXIST)
		_, _, _, e = f.v.Create(ctx, f.who, root, "ed", syscall.O_CREAT|syscall.O_WRONLY, 0o644, &a)
		checkErrno(t, "create over a dir", e, syscall.EISDIR)
		_, _, e = f.v.Open(ctx, f.who, ed, syscall.O_WRONLY)
		checkErrno(t, "open dir for write", e, syscall.EISDIR)
		checkErrno(t, "rmdir file", f.v.Rmdir(ctx, f.who, root, "ef"), syscall.ENOTDIR)
		checkErrno(t, "unlink dir", f.v.Unlink(ctx, f.who, root, "ed"), syscall.EISDIR)
		checkErrno(t, "rename dir over file", f.v.Rename(ctx, f.who, root, "ed", root, "ef", 0), syscall.ENOTDIR)
		checkErrno(t, "rename file over dir", f.v.Rename(ctx, f.who, root, "ef", root, "ed", 0), syscall.EISDIR)
		checkErrno(t, "rename dir into itself", f.v.Rename(ctx, f.who, root, "ed", ed, "sub", 0), syscall.EINVAL)
		checkErrno(t, "RENAME_NOREPLACE", f.v.Rename(ctx, f.who, root, "ef", root, "ed", unix.RENAME_NOREPLACE), syscall.EEXIST)
		checkErrno(t, "RENAME_EXCHANGE", f.v.Rename(ctx, f.who, root, "ef", root, "ed", unix.RENAME_EXCHANGE), syscall.EINVAL)
		checkErrno(t, "invalid name", f.v.Unlink(ctx, f.who, root, "a/b"), syscall.EINVAL)
		// A directory removed behind the VFS's back.
		gone, _ := f.v.Mkdir(ctx, f.who, root, "gone", 0o755, &a)
		f.mustWrite("/gone/f", []byte("f"), 0o644)
		if err := f.c.Delete(ctx, "/gone", true, false); err != nil {
			t.Fatal(err)
		}
		_, e = f.stat("/gone/f")
		checkErrno(t, "stat in removed dir", e, syscall.ENOENT)
		checkErrno(t, "create in removed dir", f.writeFile("/gone/g", nil, 0o644), syscall.ENOENT)
		// A removed directory still referenced (a bind mount, issue 17)
		// answers from the node with no links, not ENOENT.
		if e := f.v.Getattr(ctx, f.who, gone, &a); e != 0 || a.Nlink != 0 || !a.IsDir() {
			t.Fatalf("getattr of a directory removed behind the VFS: %v nlink %d mode %o", e, a.Nlink, a.Mode)
		}
	})

	t.Run("a file another client is writing", func(t *testing.T) {
		w, err := f.c.Create(ctx, "/busy", client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		_, e := f.open("/busy", os.O_RDONLY, 0)
		checkErrno(t, "open an incomplete file", e, syscall.EBUSY)
	})

	t.Run("writes to an unlinked open file are dropped", func(t *testing.T) {
		f.mustWrite("/doomed", []byte("old"), 0o644)
		fl, e := f.open("/doomed", os.O_WRONLY, 0)
		if e != 0 {
			t.Fatal(e)
		}
		if e := fl.writeAt([]byte("new"), 0); e != 0 {
			t.Fatal(e)
		}
		if e := f.v.Unlink(ctx, f.who, f.v.Root(), "doomed"); e != 0 {
			t.Fatal(e)
		}
		checkErrno(t, "close of an unlinked file", fl.close(), 0)
		if _, err := f.c.GetStatus(ctx, "/doomed"); err == nil {
			t.Fatal("the commit brought an unlinked file back")
		}
	})

	t.Run("readdir hides commit temporaries", func(t *testing.T) {
		f.put("/hid/"+commitPrefix+"1-2", []byte("t"))
		f.put("/hid/shown", []byte("s"))
		d, _ := f.walk("/hid")
		ents, e := f.v.Readdir(ctx, f.who, d)
		if e != 0 || len(ents) != 1 || ents[0].Name != "shown" {
			t.Fatalf("readdir: %v %v", ents, e)
		}
	})
}

// TestKeepCache: a file unchanged since its last open keeps the kernel's
// page cache; a changed one does not.
func TestKeepCache(t *testing.T) {
	f := newTFS(t, func(c *Config) { c.DisablePassthrough = true })
	f.put("/k", []byte("one"))
	opens := func() OpenFlags {
		t.Helper()
		fl, e := f.open("/k", os.O_RDONLY, 0)
		if e != 0 {
			t.Fatal(e)
		}
		if _, ok := fl.h.PassthroughFd(); ok {
			t.Fatal("passthrough although disabled")
		}
		fl.close()
		return fl.fl
	}
	if fl := opens(); fl&KeepCache != 0 {
		t.Fatalf("first open: flags %b", fl)
	}
	if fl := opens(); fl&KeepCache == 0 {
		t.Fatalf("second open of an unchanged file: flags %b, want KeepCache", fl)
	}
	f.mustWrite("/k", []byte("two"), 0o644)
	if fl := opens(); fl&KeepCache != 0 {
		t.Fatalf("open after a rewrite: flags %b, want no KeepCache", fl)
	}
	mustEqual(t, "after rewrite", f.mustRead("/k"), []byte("two"))
}

// TestUnreadableStageDir: no stage, no write; the file is unchanged.
func TestUnreadableStageDir(t *testing.T) {
	f := newTFS(t, func(c *Config) { c.StageDir = "/nonexistent/stage" })
	f.put("/s", []byte("kept"))
	_, e := f.open("/s", os.O_WRONLY, 0)
	checkErrno(t, "open for write without a stage dir", e, syscall.ENOENT)
	mustEqual(t, "unchanged", f.mustRead("/s"), []byte("kept"))
}

// TestMustCacheENOSPC: with MUST_CACHE, data that can never fit the cache
// fails the write with ENOSPC (holes take no space: TestSparse).
func TestMustCacheENOSPC(t *testing.T) {
	f := newTFSWith(t, alcovetest.Options{TierBytes: 4 << 20}, nil)
	fl, e := f.open("/huge", os.O_WRONLY|os.O_CREATE, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	defer fl.close()
	chunk := make([]byte, 1<<20)
	for i := int64(0); i < 8; i++ {
		if _, e = fl.h.Write(f.ctx, chunk, i<<20); e != 0 {
			break
		}
	}
	checkErrno(t, "write past the cache's capacity", e, syscall.ENOSPC)
}
