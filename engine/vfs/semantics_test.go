package vfs

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// The issue 16 defects at the VFS level (engine/fuse's TestPOSIXCompare
// runs them mounted, as root and as uid 65534, against tmpfs).

// TestUnlinkedWhileOpen: a file unlinked (or replaced by a rename) while
// open stays readable and writable through its handles with no links,
// disappears at the last close, and no commit brings it back.
func TestUnlinkedWhileOpen(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx
	root := f.v.Root()
	for _, tc := range []struct {
		name   string
		remove func() syscall.Errno
	}{
		{"unlink", func() syscall.Errno { return f.v.Unlink(ctx, f.who, root, "u") }},
		{"rename over", func() syscall.Errno {
			f.mustWrite("/other", []byte("other"), 0o644)
			return f.v.Rename(ctx, f.who, root, "other", root, "u", 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mustWrite("/u", []byte("hello"), 0o644)
			// The writer first: a writer cannot join a passthrough reader.
			w, e := f.open("/u", os.O_RDWR, 0)
			if e != 0 {
				t.Fatal(e)
			}
			r, e := f.open("/u", os.O_RDONLY, 0)
			if e != 0 {
				t.Fatal(e)
			}
			n := w.h.Node()
			if e := tc.remove(); e != 0 {
				t.Fatal(e)
			}
			var a Attr
			if e := f.v.Getattr(ctx, f.who, n, &a); e != 0 || a.Nlink != 0 || a.Size != 5 {
				t.Fatalf("fstat after %s: %v nlink %d size %d", tc.name, e, a.Nlink, a.Size)
			}
			buf := make([]byte, 5)
			if k, e := r.readAt(buf, 0); e != 0 || string(buf[:k]) != "hello" {
				t.Fatalf("read through the open reader: %q %v", buf[:k], e)
			}
			if e := w.writeAt([]byte("HE"), 0); e != 0 {
				t.Fatal(e)
			}
			if e := w.h.Flush(ctx); e != 0 {
				t.Fatalf("flush of an unlinked file: %v", e)
			}
			if k, e := w.readAt(buf, 0); e != 0 || string(buf[:k]) != "HEllo" {
				t.Fatalf("read back what was written after the unlink: %q %v", buf[:k], e)
			}
			if k, e := r.readAt(buf, 0); e != 0 || string(buf[:k]) != "HEllo" {
				t.Fatalf("another handle reads the write: %q %v", buf[:k], e)
			}
			id := n.currentID()
			if _, err := f.c.StatusByID(ctx, id); err != nil {
				t.Fatalf("the master dropped the open file: %v", err)
			}
			checkErrno(t, "close writer", w.close(), 0)
			if _, err := f.c.StatusByID(ctx, id); err != nil {
				t.Fatalf("the master dropped the file while a reader is open: %v", err)
			}
			if k, e := r.readAt(buf, 0); e != 0 || string(buf[:k]) != "HEllo" {
				t.Fatalf("the reader after the writer closed: %q %v", buf[:k], e)
			}
			checkErrno(t, "close reader", r.close(), 0)
			if _, err := f.c.StatusByID(ctx, id); err == nil {
				t.Fatal("the unlinked file outlived its last close")
			}
			switch tc.name {
			case "unlink":
				if _, err := f.c.GetStatus(ctx, "/u"); err == nil {
					t.Fatal("the unlinked file came back")
				}
			default:
				mustEqual(t, "the name has the new file", f.mustRead("/u"), []byte("other"))
			}
		})
	}
}

// TestInodeNumbers: stable across commits and renames; a name replaced
// by a rename has the moved file's number.
func TestInodeNumbers(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx
	root := f.v.Root()
	f.mustWrite("/a", []byte("1"), 0o644)
	a1, _ := f.stat("/a")
	f.mustWrite("/a", []byte("22"), 0o644)
	a2, _ := f.stat("/a")
	info, _ := f.c.GetStatus(ctx, "/a")
	if a1.Ino != a2.Ino || uint64(info.GetIno()) != a1.Ino {
		t.Fatalf("rewrite: ino %d → %d (master %d)", a1.Ino, a2.Ino, info.GetIno())
	}
	// A second VFS (a restarted daemon) sees the same number.
	g := newTFSOn(t, f)
	if b, _ := g.stat("/a"); b.Ino != a1.Ino {
		t.Fatalf("another VFS sees ino %d, want %d", b.Ino, a1.Ino)
	}
	f.mustWrite("/b", []byte("b"), 0o644)
	b, _ := f.stat("/b")
	if e := f.v.Rename(ctx, f.who, root, "b", root, "a", 0); e != 0 {
		t.Fatal(e)
	}
	if a3, _ := f.stat("/a"); a3.Ino != b.Ino {
		t.Fatalf("a after rename b→a: ino %d, want b's %d", a3.Ino, b.Ino)
	}
}

// TestTimes: ctime moves with chmod/chown/rename, utimes sets atime and
// mtime, a read updates atime by relatime's rule.
func TestTimes(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx
	f.mustWrite("/t", []byte("x"), 0o644)
	n, _ := f.walk("/t")
	a0, _ := f.stat("/t")
	time.Sleep(5 * time.Millisecond)
	mode := uint32(0o600)
	var a Attr
	if e := f.v.Setattr(ctx, f.who, n, SetAttrIn{Mode: &mode}, &a); e != 0 {
		t.Fatal(e)
	}
	if !a.Ctime.After(a0.Ctime) || !a.Mtime.Equal(a0.Mtime) {
		t.Fatalf("chmod: ctime %v → %v, mtime %v → %v", a0.Ctime, a.Ctime, a0.Mtime, a.Mtime)
	}
	at, mt := int64(1_000_000_000_000), int64(1_200_000_000_000)
	if e := f.v.Setattr(ctx, f.who, n, SetAttrIn{Atime: &at, Mtime: &mt}, &a); e != 0 {
		t.Fatal(e)
	}
	if a.Atime.UnixMilli() != at || a.Mtime.UnixMilli() != mt {
		t.Fatalf("utimes: atime %d mtime %d", a.Atime.UnixMilli(), a.Mtime.UnixMilli())
	}
	f.mustRead("/t")
	a1, _ := f.stat("/t")
	if !a1.Atime.After(time.UnixMilli(mt)) {
		t.Fatalf("a read of a file with atime <= mtime kept atime %v", a1.Atime)
	}
	f.mustRead("/t")
	if a2, _ := f.stat("/t"); !a2.Atime.Equal(a1.Atime) {
		t.Fatalf("a second read moved atime again (relatime: once per change): %v → %v", a1.Atime, a2.Atime)
	}
	// noatime: reads leave it.
	if e := f.v.Setattr(ctx, f.who, n, SetAttrIn{Atime: &at}, &a); e != 0 {
		t.Fatal(e)
	}
	g := newTFSOn(t, f)
	g.v.cfg.NoAtime = true
	g.mustRead("/t")
	if a3, _ := g.stat("/t"); a3.Atime.UnixMilli() != at {
		t.Fatalf("a read with NoAtime moved atime to %v", a3.Atime)
	}
}

// TestSymlinks: links are created, read, listed and looked up as links.
func TestSymlinks(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx
	root := f.v.Root()
	var a Attr
	l, e := f.v.Symlink(ctx, f.who, root, "l", "target/x", &a)
	if e != 0 {
		t.Fatal(e)
	}
	if a.Mode != syscall.S_IFLNK|0o777 || a.Size != 8 || l.Type() != syscall.S_IFLNK {
		t.Fatalf("symlink attr: mode %o size %d", a.Mode, a.Size)
	}
	if tgt, e := f.v.Readlink(ctx, f.who, l); e != 0 || tgt != "target/x" {
		t.Fatalf("readlink: %q %v", tgt, e)
	}
	_, e = f.v.Symlink(ctx, f.who, root, "l", "y", &a)
	checkErrno(t, "symlink over an existing name", e, syscall.EEXIST)
	g := newTFSOn(t, f)
	gl, e := g.walk("/l")
	if e != 0 || gl.Type() != syscall.S_IFLNK {
		t.Fatalf("lookup from another VFS: %v", e)
	}
	if tgt, e := g.v.Readlink(ctx, g.who, gl); e != 0 || tgt != "target/x" {
		t.Fatalf("readlink from another VFS: %q %v", tgt, e)
	}
	_, _, e = f.v.Open(ctx, f.who, l, syscall.O_RDONLY)
	checkErrno(t, "open a link itself", e, syscall.ELOOP)
	ents, e := f.v.Readdir(ctx, f.who, root)
	if e != 0 || len(ents) != 1 || ents[0].Type != syscall.S_IFLNK {
		t.Fatalf("readdir: %+v %v", ents, e)
	}
	if e := f.v.Unlink(ctx, f.who, root, "l"); e != 0 {
		t.Fatal(e)
	}
}

// TestDirLinks: a directory's link count is 2 + its subdirectories.
func TestDirLinks(t *testing.T) {
	f := newTFS(t, nil)
	ctx := f.ctx
	var a Attr
	d, _ := f.v.Mkdir(ctx, f.who, f.v.Root(), "d", 0o755, &a)
	f.v.Mkdir(ctx, f.who, d, "x", 0o755, &a)
	f.v.Mkdir(ctx, f.who, d, "y", 0o755, &a)
	f.mustWrite("/d/f", nil, 0o644)
	if st, _ := f.stat("/d"); st.Nlink != 4 {
		t.Fatalf("nlink %d, want 4", st.Nlink)
	}
	f.v.Rmdir(ctx, f.who, d, "x")
	if st, _ := f.stat("/d"); st.Nlink != 3 {
		t.Fatalf("nlink %d after rmdir, want 3", st.Nlink)
	}
}

// TestSparse: one byte at 2 GiB + 1 of a new file commits without the
// cache space of the hole (the test worker has 1 GiB), reads back, and
// keeps its holes through a truncate-up and through persistence.
func TestSparse(t *testing.T) {
	for _, wt := range []apiv1.WriteType{apiv1.WriteType_MUST_CACHE, apiv1.WriteType_ASYNC_THROUGH, apiv1.WriteType_CACHE_THROUGH} {
		t.Run(wt.String(), func(t *testing.T) {
			f := newTFS(t, func(c *Config) { c.WriteType = wt })
			const off = 2<<30 + 1
			fl, e := f.open("/s", os.O_CREATE|os.O_RDWR, 0o644)
			if e != 0 {
				t.Fatal(e)
			}
			if e := fl.writeAt([]byte("Z"), off); e != 0 {
				t.Fatalf("write at 2 GiB + 1: %v", e)
			}
			if e := fl.close(); e != 0 {
				t.Fatalf("close (commit): %v", e)
			}
			info, err := f.c.GetStatus(f.ctx, "/s")
			if err != nil || info.GetLength() != off+1 || len(info.GetHoles()) != 1 || info.GetInAlcovePercentage() != 100 {
				t.Fatalf("alcove: length %d holes %v in alcove %d%% (%v)", info.GetLength(), info.GetHoles(), info.GetInAlcovePercentage(), err)
			}
			if info.GetPersistenceState() == apiv1.PersistenceState_LOST {
				t.Fatal("a hole counted as a lost block")
			}
			r, e := f.open("/s", os.O_RDONLY, 0)
			if e != 0 {
				t.Fatal(e)
			}
			buf := make([]byte, 1<<20)
			if n, e := r.readAt(buf, 1<<30); e != 0 || n != len(buf) || !bytes.Equal(buf, make([]byte, len(buf))) {
				t.Fatalf("read in the hole: %d bytes, %v, zeros %v", n, e, bytes.Equal(buf, make([]byte, len(buf))))
			}
			if n, e := r.readAt(buf[:2], off); e != 0 || n != 1 || buf[0] != 'Z' {
				t.Fatalf("the byte: %d %q %v", n, buf[:n], e)
			}
			r.close()
			// Truncate up: a hole at the end, and the staged content
			// keeps its holes (no 2 GiB copied into the stage).
			n, _ := f.walk("/s")
			size := uint64(3 << 30)
			var a Attr
			if e := f.v.Setattr(f.ctx, f.who, n, SetAttrIn{Size: &size}, &a); e != 0 {
				t.Fatalf("truncate up: %v", e)
			}
			if a.Size != size || a.Blocks > 1<<12 {
				t.Fatalf("after truncate up: size %d blocks %d (holes must take no space)", a.Size, a.Blocks)
			}
			if wt == apiv1.WriteType_MUST_CACHE {
				return
			}
			// The UFS copy is sparse too.
			deadline := time.Now().Add(30 * time.Second)
			for {
				info, _ = f.c.GetStatus(f.ctx, "/s")
				if info.GetPersistenceState() == apiv1.PersistenceState_PERSISTED {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not persisted: %v", info.GetPersistenceState())
				}
				time.Sleep(20 * time.Millisecond)
			}
			var st syscall.Stat_t
			p := strings.TrimPrefix(info.GetUfsPath(), "file://")
			if err := syscall.Stat(p, &st); err != nil || st.Size != int64(size) || st.Blocks > 1<<12 {
				t.Fatalf("UFS copy %s: size %d blocks %d (%v)", p, st.Size, st.Blocks, err)
			}
		})
	}
}

// TestGetattrDuringCommit: getattr of a file while a flush commits it
// through another handle. The commit holds the stage's lock across the
// upload and then takes the node's; a getattr holding the node's lock
// while it waited for the stage's deadlocked both (a writer's close and a
// reader's stat hung for good in an e2e run).
func TestGetattrDuringCommit(t *testing.T) {
	f := newTFS(t, nil)
	fl, e := f.open("/busy", os.O_WRONLY|os.O_CREATE, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	n, e := f.walk("/busy")
	if e != 0 {
		t.Fatal(e)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var a Attr
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.v.Getattr(f.ctx, f.who, n, &a)
		}
	}()
	done := make(chan syscall.Errno, 1)
	go func() {
		data := randData(1, 1<<20)
		for i := 0; i < 20; i++ {
			if e := fl.writeAt(data, int64(i)<<20); e != 0 {
				done <- e
				return
			}
			if e := fl.h.Flush(f.ctx); e != 0 {
				done <- e
				return
			}
		}
		done <- 0
	}()
	select {
	case e := <-done:
		close(stop)
		wg.Wait()
		if e != 0 {
			t.Fatal(e)
		}
		checkErrno(t, "close", fl.close(), 0)
	case <-time.After(30 * time.Second):
		t.Fatal("flush and getattr deadlocked") // the handle is left open: closing it would hang too
	}
}
