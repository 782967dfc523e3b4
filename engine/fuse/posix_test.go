package fuse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestPOSIX checks through a real mount what the kernel adds to the VFS
// (engine/vfs runs every operation and errno in process): inode numbers,
// io modes (passthrough beside writers), O_APPEND, truncate with and
// without a file, the go-fuse tree across renames, kernel errnos.
func TestPOSIX(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	ctx := context.Background()

	t.Run("create write read stat", func(t *testing.T) {
		data := randData(1, 3<<20+123)
		if err := os.WriteFile(e.p("a.bin"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "read back", mustRead(t, e.p("a.bin")), data)
		st, err := os.Stat(e.p("a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(len(data)) || st.Mode().Perm() != 0o640 || !st.Mode().IsRegular() {
			t.Fatalf("stat: size %d mode %v", st.Size(), st.Mode())
		}
		info, err := e.c.GetStatus(ctx, "/a.bin")
		if err != nil || info.GetLength() != int64(len(data)) || !info.GetCompleted() {
			t.Fatalf("alcove sees %v, %v", info, err)
		}
		// A file written by a client: its inode number is its Alcove id.
		e.put(t, "/byclient", []byte("c"))
		cinfo, _ := e.c.GetStatus(ctx, "/byclient")
		cst, err := os.Stat(e.p("byclient"))
		if err != nil {
			t.Fatal(err)
		}
		if ino := cst.Sys().(*syscall.Stat_t).Ino; ino != uint64(cinfo.GetFileId()) {
			t.Fatalf("inode %d, want the Alcove file id %d", ino, cinfo.GetFileId())
		}
		// A commit gives the file a new Alcove id; the inode number
		// stays while the kernel knows the file.
		before := st.Sys().(*syscall.Stat_t).Ino
		if err := os.WriteFile(e.p("a.bin"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		if st2, _ := os.Stat(e.p("a.bin")); st2.Sys().(*syscall.Stat_t).Ino != before {
			t.Fatalf("inode changed from %d to %d on rewrite", before, st2.Sys().(*syscall.Stat_t).Ino)
		}
		// Writing a file that is open through passthrough: ETXTBSY.
		f, err := os.Open(e.p("a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.OpenFile(e.p("a.bin"), os.O_WRONLY, 0)
		f.Close()
		if !errors.Is(err, syscall.ETXTBSY) {
			t.Fatalf("open for write beside a passthrough reader: %v, want ETXTBSY", err)
		}
	})

	t.Run("append", func(t *testing.T) {
		p := e.p("log.txt")
		if err := os.WriteFile(p, []byte("one\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"two\n", "three\n"} {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(line); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		mustEqual(t, "appended", mustRead(t, p), []byte("one\ntwo\nthree\n"))
	})

	t.Run("overwrite in the middle and read after write", func(t *testing.T) {
		p := e.p("mid.bin")
		data := randData(2, 2<<20)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		patch := bytes.Repeat([]byte("X"), 5000)
		if _, err := f.WriteAt(patch, 1<<20-100); err != nil {
			t.Fatal(err)
		}
		copy(data[1<<20-100:], patch)
		// Read after write, before close: served from the stage.
		got := make([]byte, 6000)
		if _, err := f.ReadAt(got, 1<<20-600); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "read through the stage", got, data[1<<20-600:1<<20+5400])
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "after overwrite", mustRead(t, p), data)
		// Alcove itself has the new content.
		r, err := e.c.OpenFile(ctx, "/mid.bin", 0)
		if err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "alcove after overwrite", all, data)
	})

	t.Run("truncate", func(t *testing.T) {
		p := e.p("trunc.bin")
		data := randData(3, 100000)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "shrunk", mustRead(t, p), data[:1000])
		if err := os.Truncate(p, 5000); err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte{}, data[:1000]...), make([]byte, 4000)...)
		mustEqual(t, "grown", mustRead(t, p), want)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if st, _ := os.Stat(p); st.Size() != 0 {
			t.Fatalf("O_TRUNC left %d bytes", st.Size())
		}
	})

	t.Run("mkdir readdir rename unlink rmdir", func(t *testing.T) {
		d := e.p("dir")
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"x", "y", "z"} {
			if err := os.WriteFile(filepath.Join(d, n), []byte(n), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, en := range ents {
			names = append(names, en.Name())
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "x,y,z" {
			t.Fatalf("readdir: %v", names)
		}
		// rename over an existing file
		if err := os.Rename(filepath.Join(d, "x"), filepath.Join(d, "y")); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "renamed over", mustRead(t, filepath.Join(d, "y")), []byte("x"))
		if _, err := os.Stat(filepath.Join(d, "x")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("source still there: %v", err)
		}
		// rename a directory
		if err := os.Rename(d, e.p("dir2")); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "in renamed dir", mustRead(t, e.p("dir2/z")), []byte("z"))
		if err := os.Remove(e.p("dir2")); !errors.Is(err, syscall.ENOTEMPTY) {
			t.Fatalf("rmdir non-empty: %v, want ENOTEMPTY", err)
		}
		for _, n := range []string{"y", "z"} {
			if err := os.Remove(e.p("dir2/" + n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Rmdir(e.p("dir2")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(e.p("dir2")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("dir still there: %v", err)
		}
	})

	t.Run("concurrent readers", func(t *testing.T) {
		data := randData(4, 5<<20)
		e.put(t, "/shared.bin", data)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := os.ReadFile(e.p("shared.bin"))
				if err == nil && !bytes.Equal(got, data) {
					err = errors.New("content differs")
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("errnos", func(t *testing.T) {
		long := strings.Repeat("n", 256)
		check := func(what string, err, want error) {
			t.Helper()
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", what, err, want)
			}
		}
		_, err := os.Stat(e.p(long))
		check("stat long name", err, syscall.ENAMETOOLONG)
		check("create long name", os.WriteFile(e.p(long), nil, 0o644), syscall.ENAMETOOLONG)
		check("mkdir long name", os.Mkdir(e.p(long), 0o755), syscall.ENAMETOOLONG)
		_, err = os.Stat(e.p("nope"))
		check("stat missing", err, syscall.ENOENT)
		_, err = os.ReadFile(e.p("nope/deeper"))
		check("open under missing", err, syscall.ENOENT)
		os.Mkdir(e.p("ed"), 0o755)
		os.WriteFile(e.p("ef"), []byte("f"), 0o644)
		check("mkdir existing", os.Mkdir(e.p("ed"), 0o755), syscall.EEXIST)
		_, err = os.OpenFile(e.p("ef"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		check("O_EXCL existing", err, syscall.EEXIST)
		_, err = os.OpenFile(e.p("ed"), os.O_WRONLY, 0)
		check("open dir for write", err, syscall.EISDIR)
		_, err = os.Stat(e.p("ef/x"))
		check("file as dir", err, syscall.ENOTDIR)
		check("rmdir file", syscall.Rmdir(e.p("ef")), syscall.ENOTDIR)
		check("unlink dir", syscall.Unlink(e.p("ed")), syscall.EISDIR)
		check("rename dir over file", os.Rename(e.p("ed"), e.p("ef")), syscall.ENOTDIR)
		check("link", os.Link(e.p("ef"), e.p("ef2")), syscall.EPERM)
		// A directory removed behind the mount's back.
		os.Mkdir(e.p("gone"), 0o755)
		os.WriteFile(e.p("gone/f"), []byte("f"), 0o644)
		if err := e.c.Delete(ctx, "/gone", true, false); err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(e.p("gone/f"))
		check("stat in removed dir", err, syscall.ENOENT)
		check("create in removed dir", os.WriteFile(e.p("gone/g"), nil, 0o644), syscall.ENOENT)
	})
}

// TestReopenAfterClose opens a file again right after closing it, in the
// other io mode, many times: a passthrough read, then a write (page
// cache), then a read. The kernel queues RELEASE in the background after
// close(2), so the daemon often sees the next OPEN first; it must wait for
// that RELEASE instead of failing the writer with ETXTBSY, and must never
// give the kernel a mode that conflicts with one it still holds (EIO).
// This is how TestFSX used to fail now and then.
func TestReopenAfterClose(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	p := e.p("flip")
	data := randData(20, 1<<20)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for i := 0; i < rounds; i++ {
		mustEqual(t, "read", mustRead(t, p), data)
		data[i%len(data)]++
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatalf("round %d: write right after a passthrough read: %v", i, err)
		}
	}
	mustEqual(t, "final", mustRead(t, p), data)
	if n := counter(e.srv.vfs.Metrics().PassthroughOpens); n < float64(rounds)/2 {
		t.Fatalf("%v passthrough opens in %d rounds: the reads did not use passthrough", n, rounds)
	}
}
