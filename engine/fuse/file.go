package fuse

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/alcove-io/alcove/engine/vfs"
)

// fileHandle is a go-fuse file handle for a VFS handle served through the
// daemon (page cache or direct io).
type fileHandle struct{ h *vfs.Handle }

// passthroughHandle is a VFS handle the kernel reads from the local
// worker's cache file; the daemon sees no READ for it. Only it implements
// FilePassthroughFder: go-fuse hands an inode's backing file to every
// open of that inode whose handle does.
type passthroughHandle struct{ fileHandle }

var (
	_ fs.FileReader          = (*fileHandle)(nil)
	_ fs.FileWriter          = (*fileHandle)(nil)
	_ fs.FileFlusher         = (*fileHandle)(nil)
	_ fs.FileFsyncer         = (*fileHandle)(nil)
	_ fs.FileReleaser        = (*fileHandle)(nil)
	_ fs.FilePassthroughFder = (*passthroughHandle)(nil)
)

// fileHandleOf wraps h for go-fuse with its open flags.
func fileHandleOf(h *vfs.Handle, fl vfs.OpenFlags) (fs.FileHandle, uint32) {
	var out uint32
	if fl&vfs.DirectIO != 0 {
		out |= gofuse.FOPEN_DIRECT_IO
	}
	if fl&vfs.KeepCache != 0 {
		out |= gofuse.FOPEN_KEEP_CACHE
	}
	if _, ok := h.PassthroughFd(); ok {
		return &passthroughHandle{fileHandle{h}}, out
	}
	return &fileHandle{h}, out
}

func (p *passthroughHandle) PassthroughFd() (int, bool) { return p.h.PassthroughFd() }

func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (gofuse.ReadResult, syscall.Errno) {
	n, e := f.h.Read(ctx, dest, off)
	if e != 0 {
		return nil, e
	}
	return gofuse.ReadResultData(dest[:n]), 0
}

func (f *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.h.Write(ctx, data, off)
}

func (f *fileHandle) Flush(ctx context.Context) syscall.Errno { return f.h.Flush(ctx) }

func (f *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return f.h.Fsync(ctx) }

func (f *fileHandle) Release(ctx context.Context) syscall.Errno { return f.h.Release(ctx) }
