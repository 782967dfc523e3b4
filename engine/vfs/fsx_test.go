package vfs

import (
	"syscall"
	"testing"

	"github.com/alcove-io/alcove/test/fsx"
)

// TestFSX replays random file operations on the VFS and on a local
// directory and compares them (test/fsx).
func TestFSX(t *testing.T) {
	f := newTFS(t, nil)
	fsx.Run(t, vfsFS{f}, fsx.Dir(t.TempDir()), fsx.Ops())
}

// errOf is e as an error (nil for success).
func errOf(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// vfsFS is the harness as an fsx.FS: files in the root directory.
type vfsFS struct{ f *tfs }

type vfsFile struct {
	*file
	name string
}

func (v vfsFS) Open(name string, flags int) (fsx.File, error) {
	fl, e := v.f.open("/"+name, flags, 0o644)
	if e != 0 {
		return nil, e
	}
	return vfsFile{fl, name}, nil
}

func (v vfsFS) ReadFile(name string) ([]byte, error) {
	b, e := v.f.readFile("/" + name)
	return b, errOf(e)
}

func (v vfsFS) Rename(from, to string) error {
	root := v.f.v.Root()
	return errOf(v.f.v.Rename(v.f.ctx, v.f.who, root, from, root, to, 0))
}

func (v vfsFS) Remove(name string) error {
	return errOf(v.f.v.Unlink(v.f.ctx, v.f.who, v.f.v.Root(), name))
}

func (fl vfsFile) ReadAt(p []byte, off int64) (int, error) {
	n, e := fl.readAt(p, off)
	return n, errOf(e)
}

func (fl vfsFile) WriteAt(p []byte, off int64) (int, error) {
	if e := fl.writeAt(p, off); e != 0 {
		return 0, e
	}
	return len(p), nil
}

// Append writes at the file's size, as the kernel does for O_APPEND.
func (fl vfsFile) Append(p []byte) error {
	a, e := fl.f.stat("/" + fl.name)
	if e != 0 {
		return e
	}
	return errOf(fl.writeAt(p, int64(a.Size)))
}

func (fl vfsFile) Truncate(size int64) error {
	sz := uint64(size)
	var a Attr
	return errOf(fl.f.v.Setattr(fl.f.ctx, fl.f.who, fl.h.Node(), SetAttrIn{Size: &sz, Handle: fl.h}, &a))
}

func (fl vfsFile) Sync() error  { return errOf(fl.h.Fsync(fl.f.ctx)) }
func (fl vfsFile) Close() error { return errOf(fl.close()) }
