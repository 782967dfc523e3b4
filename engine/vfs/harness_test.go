package vfs

import (
	"context"
	"math/rand"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
	"github.com/alcove-io/alcove/test/fsx"
)

const testNode = "vfs-test-node"

// tfs drives a VFS as the kernel would (path walks by Lookup, open,
// read, write, flush, release) over a real master and worker in process.
type tfs struct {
	t   testing.TB
	v   *VFS
	c   *client.Client
	cl  *alcovetest.Cluster
	ctx context.Context
	who Caller
}

func newTFS(t testing.TB, mod func(*Config)) *tfs {
	t.Helper()
	return newTFSWith(t, alcovetest.Options{}, mod)
}

// newTFSWith is newTFS over a cluster started with opts.
func newTFSWith(t testing.TB, opts alcovetest.Options, mod func(*Config)) *tfs {
	t.Helper()
	cl := alcovetest.StartWith(t, opts, testNode)
	c := cl.Client(testNode)
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not register: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	giveRootToUser(t, c)
	info, err := c.GetStatus(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Root: "/", WriteType: apiv1.WriteType_MUST_CACHE, StageDir: t.TempDir(), Node: testNode}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(ctx, cfg, c, info.GetFileId())
	if err != nil {
		t.Fatal(err)
	}
	return &tfs{t: t, v: v, c: c, cl: cl, ctx: ctx, who: Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Pid: uint32(os.Getpid())}}
}

// giveRootToUser makes the test's user own the namespace root when it is
// not root, as a user runs these tests in a directory of their own (the
// master's superuser is the user that started it, so the chown is allowed).
func giveRootToUser(t testing.TB, c *client.Client) {
	t.Helper()
	if os.Getuid() == 0 {
		return
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetAttribute(context.Background(), &apiv1.SetAttributeRequest{Path: "/", Owner: &u.Username, Group: &g.Name}); err != nil {
		t.Fatalf("give / to %s:%s: %v", u.Username, g.Name, err)
	}
}

// newTFSOn is a second VFS over f's cluster (another mount, or a
// restarted daemon): it knows no nodes yet.
func newTFSOn(t testing.TB, f *tfs) *tfs {
	t.Helper()
	info, err := f.c.GetStatus(f.ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.v.Config()
	cfg.StageDir, cfg.Session = t.TempDir(), ""
	v, err := New(f.ctx, cfg, f.c, info.GetFileId())
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.v = v
	return &g
}

// walk resolves p ("/a/b") to its node, as the kernel's path walk does.
func (f *tfs) walk(p string) (*Node, syscall.Errno) {
	n := f.v.Root()
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		if !n.IsDir() {
			return nil, syscall.ENOTDIR
		}
		var a Attr
		ch, e := f.v.Lookup(f.ctx, f.who, n, name, &a)
		if e != 0 {
			return nil, e
		}
		n = ch
	}
	return n, 0
}

// parent resolves the directory of p and returns p's last name.
func (f *tfs) parent(p string) (*Node, string, syscall.Errno) {
	i := strings.LastIndex(p, "/")
	d, e := f.walk(p[:i])
	return d, p[i+1:], e
}

func (f *tfs) stat(p string) (Attr, syscall.Errno) {
	var a Attr
	n, e := f.walk(p)
	if e != 0 {
		return a, e
	}
	return a, f.v.Getattr(f.ctx, f.who, n, &a)
}

// file is an open file of the harness.
type file struct {
	f  *tfs
	h  *Handle
	fl OpenFlags
}

// open opens p like open(2): LOOKUP, then CREATE for a missing file with
// O_CREAT, else OPEN (O_EXCL on an existing file: EEXIST).
func (f *tfs) open(p string, flags int, mode uint32) (*file, syscall.Errno) {
	d, name, e := f.parent(p)
	if e != 0 {
		return nil, e
	}
	var a Attr
	n, e := f.v.Lookup(f.ctx, f.who, d, name, &a)
	switch {
	case e == syscall.ENOENT && flags&os.O_CREATE != 0:
		_, h, fl, e := f.v.Create(f.ctx, f.who, d, name, uint32(flags), mode, &a)
		if e != 0 {
			return nil, e
		}
		return &file{f: f, h: h, fl: fl}, 0
	case e != 0:
		return nil, e
	case flags&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, syscall.EEXIST
	}
	h, fl, e := f.v.Open(f.ctx, f.who, n, uint32(flags&^(os.O_CREATE|os.O_EXCL)))
	if e != 0 {
		return nil, e
	}
	return &file{f: f, h: h, fl: fl}, 0
}

// readAt reads like pread(2): until b is full or the end of the file.
func (fl *file) readAt(b []byte, off int64) (int, syscall.Errno) {
	got := 0
	for got < len(b) {
		n, e := fl.h.Read(fl.f.ctx, b[got:min(len(b), got+1<<20)], off+int64(got))
		if e != 0 {
			return got, e
		}
		if n == 0 {
			break
		}
		got += n
	}
	return got, 0
}

func (fl *file) writeAt(b []byte, off int64) syscall.Errno {
	for len(b) > 0 {
		chunk := b[:min(len(b), 1<<20)]
		n, e := fl.h.Write(fl.f.ctx, chunk, off)
		if e != 0 {
			return e
		}
		b, off = b[n:], off+int64(n)
	}
	return 0
}

// close is close(2): FLUSH (its error is close's), then RELEASE.
func (fl *file) close() syscall.Errno {
	e := fl.h.Flush(fl.f.ctx)
	if re := fl.h.Release(fl.f.ctx); e == 0 {
		e = re
	}
	return e
}

func (f *tfs) writeFile(p string, data []byte, mode uint32) syscall.Errno {
	fl, e := f.open(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if e != 0 {
		return e
	}
	if e := fl.writeAt(data, 0); e != 0 {
		fl.close()
		return e
	}
	return fl.close()
}

func (f *tfs) readFile(p string) ([]byte, syscall.Errno) {
	fl, e := f.open(p, os.O_RDONLY, 0)
	if e != 0 {
		return nil, e
	}
	defer fl.close()
	var out []byte
	buf := make([]byte, 1<<20)
	for {
		n, e := fl.readAt(buf, int64(len(out)))
		if e != 0 {
			return nil, e
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out, 0
		}
	}
}

func (f *tfs) mustWrite(p string, data []byte, mode uint32) {
	f.t.Helper()
	if e := f.writeFile(p, data, mode); e != 0 {
		f.t.Fatalf("write %s: %v", p, e)
	}
}

func (f *tfs) mustRead(p string) []byte {
	f.t.Helper()
	b, e := f.readFile(p)
	if e != 0 {
		f.t.Fatalf("read %s: %v", p, e)
	}
	return b
}

// put writes a file through the client (not the VFS).
func (f *tfs) put(path string, data []byte) {
	f.t.Helper()
	w, err := f.c.Create(f.ctx, path, client.WriteOptions{Recursive: true})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		f.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.t.Fatal(err)
	}
}

func randData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	fsx.Equal(t, what, got, want)
}

func checkErrno(t testing.TB, what string, got, want syscall.Errno) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %v, want %v", what, errName(got), errName(want))
	}
}

func errName(e syscall.Errno) string {
	if e == 0 {
		return "success"
	}
	return e.Error()
}
