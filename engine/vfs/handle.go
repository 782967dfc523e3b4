package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// OpenFlags tell the kernel how to serve an open handle.
type OpenFlags uint32

const (
	// DirectIO: bypass the page cache (FOPEN_DIRECT_IO).
	DirectIO OpenFlags = 1 << iota
	// KeepCache: the file is unchanged since the last open; keep its
	// pages (FOPEN_KEEP_CACHE).
	KeepCache
)

// How long an open waits for the io mode of earlier opens to go:
//
// The kernel gives an inode one io mode at a time: passthrough (with one
// backing file) or the page cache; an open that asks for the other mode
// fails with EIO (fs/fuse/iomode.c, fuse_file_io_open). It drops a
// closed file's mode in fuse_file_put (fs/fuse/file.c) *before* it queues
// the RELEASE request, so once the daemon has processed RELEASE the kernel
// is surely done with the file. Two gaps remain, and the VFS waits for the
// event that closes each, never for a fixed time:
//
//   - RELEASE is a background request: the daemon can see an OPEN that
//     the process issued after close(2) before it sees the RELEASE. A
//     writer that finds passthrough handles open waits for their RELEASE
//     (n.cond), at most passthroughCloseWait: a reader that really is
//     still open sends none, and then the open fails with ETXTBSY.
//   - go-fuse's bridge calls the handle's Release (which updates the open
//     counts here) before it finishes its own release work, including the
//     inode's passthrough backing id (go-fuse v2.12.1 fs/bridge.go,
//     Release → releaseBackingIDRef). An open that decided its io mode in
//     that window failed in the kernel with EIO (TestReopenAfterClose,
//     3 runs of 3 without this wait, 0 with it). The FUSE layer brackets
//     each RELEASE with BeginRelease/its end, and opens wait until no
//     RELEASE of the inode runs (at most releaseWait: RELEASE commits a
//     staged file, so it can take a while, and the open then goes on).
const (
	releaseWait          = 2 * time.Second
	passthroughCloseWait = 200 * time.Millisecond
)

// BeginRelease marks a RELEASE of n as running at the FUSE layer until
// the returned function is called (after the FUSE library's own release
// bookkeeping); opens of n wait for it. See releaseWait.
func (n *Node) BeginRelease() (end func()) {
	n.mu.Lock()
	n.releasing++
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		n.releasing--
		n.cond.Broadcast()
		n.mu.Unlock()
	}
}

// waitLocked waits on n.cond (n.mu held) until ok() or timeout; it
// reports ok().
func (n *Node) waitLocked(timeout time.Duration, ok func() bool) bool {
	if ok() {
		return true
	}
	t := time.AfterFunc(timeout, func() { n.mu.Lock(); n.cond.Broadcast(); n.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	n.waiting++
	n.cond.Broadcast()
	for !ok() && time.Now().Before(deadline) {
		n.cond.Wait()
	}
	n.waiting--
	return ok()
}

// Handle is an open file.
type Handle struct {
	n     *Node
	write bool
	// kind of open, fixed at open: lf is set for a passthrough handle,
	// cached for a page-cache one (neither: FOPEN_DIRECT_IO).
	lf     *client.LocalFile
	cached bool
	st     *stage // held while open for writing

	mu       sync.Mutex
	r        *client.Reader
	rcancel  context.CancelFunc
	lastSC   int64
	lastRem  int64
	lastUFS  int64
	released bool
}

// Node is the handle's node.
func (h *Handle) Node() *Node { return h.n }

// PassthroughFd is the backing file the kernel reads a passthrough handle
// from; false for other handles.
func (h *Handle) PassthroughFd() (int, bool) {
	if h.lf == nil {
		return -1, false
	}
	return int(h.lf.File.Fd()), true
}

// Writable reports whether the handle was opened for writing.
func (h *Handle) Writable() bool { return h.write }

// open returns a handle for an open(2) of n with the given flags.
func (n *Node) open(ctx context.Context, flags uint32, info *apiv1.FileInfo) (*Handle, OpenFlags, syscall.Errno) {
	if info.GetFolder() {
		return nil, 0, syscall.EISDIR
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0
	n.openMu.Lock()
	defer n.openMu.Unlock()
	n.mu.Lock()
	if !n.waitLocked(releaseWait, func() bool { return n.releasing == 0 }) {
		n.v.logger.V(2).Info("Open goes on while a release of the file still runs", "ino", n.ino)
	}
	staged := n.stage != nil
	if !staged {
		n.fileID = info.GetFileId()
	}
	fresh := n.fresh != nil
	n.mu.Unlock()
	if !info.GetCompleted() && !staged && !fresh {
		return nil, 0, syscall.EBUSY
	}
	h, fl, e := n.openMode(ctx, info, write, trunc)
	if e == 0 {
		n.mu.Lock()
		n.opens++
		n.mu.Unlock()
	}
	return h, fl, e
}

// openMode opens a handle in the io mode the file allows.
func (n *Node) openMode(ctx context.Context, info *apiv1.FileInfo, write, trunc bool) (*Handle, OpenFlags, syscall.Errno) {
	if write || trunc {
		return n.openWrite(ctx, write, trunc)
	}
	if h := n.tryPassthrough(ctx, info); h != nil {
		return h, 0, 0
	}
	h := &Handle{n: n}
	fl := n.ioMode(h)
	if fl&DirectIO == 0 {
		version := fmt.Sprintf("%d/%d/%d", info.GetFileId(), info.GetLength(), info.GetLastModificationTimeMs())
		n.mu.Lock()
		if n.cachedVersion == version && n.stage == nil {
			fl |= KeepCache
		}
		n.cachedVersion = version
		n.mu.Unlock()
	}
	return h, fl, 0
}

func (n *Node) openWrite(ctx context.Context, write, trunc bool) (*Handle, OpenFlags, syscall.Errno) {
	// The kernel serves every open of an inode with a passthrough open
	// from the same backing file, which is the worker's cache: no writer
	// can share it (like writing a running executable). Readers that
	// closed already have their RELEASE on the way: wait for it.
	n.mu.Lock()
	free := n.waitLocked(passthroughCloseWait, func() bool { return n.openPassthrough == 0 })
	n.mu.Unlock()
	if !free {
		return nil, 0, syscall.ETXTBSY
	}
	st, e := n.openStage(ctx, trunc)
	if e != 0 {
		return nil, 0, e
	}
	if trunc {
		if err := st.Truncate(0); err != nil {
			n.releaseStage(ctx, st)
			return nil, 0, errno(err)
		}
	}
	h := &Handle{n: n, write: write, st: st}
	return h, n.ioMode(h), 0
}

// tryPassthrough returns a passthrough handle when the file is served
// by passthrough already or can be (every block cached on this node's
// worker); nil otherwise.
func (n *Node) tryPassthrough(ctx context.Context, info *apiv1.FileInfo) *Handle {
	m := n.v.metrics
	n.mu.Lock()
	if n.pt != nil {
		// Already served by passthrough: every open must be.
		n.openPassthrough++
		lf := n.pt
		n.mu.Unlock()
		m.PassthroughOpens.Inc()
		return &Handle{n: n, lf: lf}
	}
	can := !n.v.cfg.DisablePassthrough && n.stage == nil && n.openCached == 0
	n.mu.Unlock()
	if !can {
		return nil
	}
	lf, err := n.v.c.OpenLocalFile(ctx, info)
	if err != nil {
		if !errors.Is(err, client.ErrNotLocal) {
			n.v.logger.V(4).Info("No passthrough", "path", info.GetPath(), "err", err)
		}
		return nil
	}
	n.mu.Lock()
	if n.stage == nil && n.openCached == 0 && n.pt == nil {
		n.openPassthrough++
		n.pt = lf
		n.mu.Unlock()
		m.PassthroughOpens.Inc()
		m.PassthroughOpenBytes.Add(float64(lf.Length))
		return &Handle{n: n, lf: lf}
	}
	n.mu.Unlock()
	lf.Close()
	return nil
}

// ioMode picks a non-passthrough handle's kernel io mode: the page cache,
// or direct io beside a passthrough handle (never for a writer: see
// openWrite).
func (n *Node) ioMode(h *Handle) OpenFlags {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.openPassthrough > 0 {
		return DirectIO
	}
	n.openCached++
	h.cached = true
	return 0
}

// reader is the handle's reader of the node's current content: a commit
// through another handle gives the file a new id (same inode), and this
// handle then reads the new content, as POSIX wants.
func (h *Handle) reader(ctx context.Context) (*client.Reader, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r != nil && h.r.Info().GetFileId() == h.n.currentID() {
		return h.r, nil
	}
	if h.r != nil {
		h.r.Close()
		h.rcancel()
		h.r = nil
	}
	octx, ocancel := opCtx(ctx)
	defer ocancel()
	info, e := h.n.status(octx)
	if e != 0 {
		return nil, e
	}
	rctx, cancel := context.WithCancel(context.Background())
	r, err := h.n.v.c.OpenInfo(rctx, info, apiv1.ReadType_READ_TYPE_UNSPECIFIED)
	if err != nil {
		cancel()
		return nil, err
	}
	h.r, h.rcancel = r, cancel
	return r, nil
}

// Read reads up to len(dest) bytes at off; fewer only at the end of the
// file.
func (h *Handle) Read(ctx context.Context, dest []byte, off int64) (int, syscall.Errno) {
	m := h.n.v.metrics
	if h.lf != nil {
		// The kernel did not take the backing fd (or no kernel reads it).
		n, err := h.lf.File.ReadAt(dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, errno(err)
		}
		m.BytesShortCircuit.Add(float64(n))
		return n, 0
	}
	if st := h.n.currentStage(); st != nil {
		n, err := st.ReadAt(dest, off)
		if !errors.Is(err, errStageClosed) {
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, errno(err)
			}
			m.BytesStage.Add(float64(n))
			return n, 0
		}
		// Released (and committed) meanwhile: read Alcove.
	}
	r, err := h.reader(ctx)
	if err != nil {
		return 0, errno(err)
	}
	n, err := r.ReadAt(dest, off)
	h.countStats(r)
	if err != nil && !errors.Is(err, io.EOF) {
		h.n.v.logger.Error(err, "Read failed", "path", r.Info().GetPath(), "offset", off)
		return 0, errno(err)
	}
	return n, 0
}

func (h *Handle) countStats(r *client.Reader) {
	sc, rem, ufs := r.Stats.ShortCircuit.Load(), r.Stats.Remote.Load(), r.Stats.UFS.Load()
	h.mu.Lock()
	dsc, drem, dufs := sc-h.lastSC, rem-h.lastRem, ufs-h.lastUFS
	h.lastSC, h.lastRem, h.lastUFS = sc, rem, ufs
	h.mu.Unlock()
	m := h.n.v.metrics
	if dsc > 0 {
		m.BytesShortCircuit.Add(float64(dsc))
	}
	if drem > 0 {
		m.BytesRemote.Add(float64(drem))
	}
	if dufs > 0 {
		m.BytesUFS.Add(float64(dufs))
	}
}

// Write writes data at off into the file's stage.
func (h *Handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write || h.st == nil {
		return 0, syscall.EBADF
	}
	if e := h.n.v.checkSpace(ctx, h.st, off, int64(len(data))); e != 0 {
		return 0, e
	}
	n, err := h.st.WriteAt(data, off)
	h.n.v.metrics.BytesWritten.Add(float64(n))
	if err != nil {
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

// Flush commits what the handle wrote (close(2)).
func (h *Handle) Flush(ctx context.Context) syscall.Errno {
	if !h.write || h.st == nil {
		return 0
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	return h.n.commit(octx, h.st)
}

// Fsync commits what the handle wrote.
func (h *Handle) Fsync(ctx context.Context) syscall.Errno { return h.Flush(ctx) }

// Release closes the handle: the last writer commits the stage, the last
// passthrough handle ends the block leases. Idempotent.
func (h *Handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return 0
	}
	h.released = true
	r, cancel := h.r, h.rcancel
	h.mu.Unlock()
	if r != nil {
		r.Close()
		cancel()
	}
	n := h.n
	var closeLF *client.LocalFile
	n.mu.Lock()
	switch {
	case h.lf != nil:
		n.openPassthrough--
		if n.openPassthrough == 0 {
			if n.pt == h.lf {
				n.pt = nil
			}
			closeLF = h.lf
		}
	case h.cached:
		n.openCached--
	}
	n.cond.Broadcast()
	n.mu.Unlock()
	if closeLF != nil {
		closeLF.Close() // ends the block leases
	}
	var e syscall.Errno
	octx, cancel := opCtx(ctx)
	defer cancel()
	if h.st != nil {
		e = n.releaseStage(octx, h.st)
	}
	if n.closed() {
		n.releaseOrphan(octx)
	}
	return e
}
