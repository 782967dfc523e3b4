package fuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// open returns a handle for an open(2) of n with the given flags.
func (n *node) open(ctx context.Context, flags uint32, info *apiv1.FileInfo) (fs.FileHandle, uint32, syscall.Errno) {
	if info.GetFolder() {
		return nil, 0, syscall.EISDIR
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0
	// One open at a time per node: the io mode decision (passthrough or
	// page cache) must see the other opens.
	n.openMu.Lock()
	defer n.openMu.Unlock()
	n.waitReleases(500 * time.Millisecond)
	n.mu.Lock()
	staged := n.stage != nil
	if !staged {
		n.fileID = info.GetFileId()
	}
	n.mu.Unlock()
	if !info.GetCompleted() && !staged {
		return nil, 0, syscall.EBUSY
	}
	if write || trunc {
		// The kernel serves every open of an inode with a passthrough
		// open from the same backing file, which is the worker's cache:
		// no writer can share it (like writing a running executable).
		// The kernel drops its side of a closed file before it sends
		// RELEASE (asynchronously): give pending releases a moment.
		if n.waitNoPassthrough(200 * time.Millisecond) {
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
		h := &fileHandle{n: n, write: write, st: st}
		return h, n.ioMode(h), 0
	}
	n.mu.Lock()
	if n.pt != nil {
		// Already served by passthrough: every open must be.
		n.openPassthrough++
		lf := n.pt
		n.mu.Unlock()
		n.fsys.metrics.passthroughOpens.Inc()
		return &passthroughHandle{n: n, lf: lf}, 0, 0
	}
	canPassthrough := !n.fsys.cfg.DisablePassthrough && n.stage == nil && n.openCached == 0
	n.mu.Unlock()
	if canPassthrough {
		lf, err := n.fsys.c.OpenLocalFile(ctx, info)
		if err == nil {
			n.mu.Lock()
			if n.stage == nil && n.openCached == 0 && n.pt == nil {
				n.openPassthrough++
				n.pt = lf
				n.mu.Unlock()
				n.fsys.metrics.passthroughOpens.Inc()
				n.fsys.metrics.passthroughOpenBytes.Add(float64(lf.Length))
				return &passthroughHandle{n: n, lf: lf}, 0, 0
			}
			n.mu.Unlock()
			lf.Close()
		} else if !errors.Is(err, client.ErrNotLocal) {
			n.fsys.logger.V(4).Info("No passthrough", "path", info.GetPath(), "err", err)
		}
	}
	h := &fileHandle{n: n}
	fl := n.ioMode(h)
	if fl&gofuse.FOPEN_DIRECT_IO == 0 {
		version := fmt.Sprintf("%d/%d/%d", info.GetFileId(), info.GetLength(), info.GetLastModificationTimeMs())
		n.mu.Lock()
		if n.cachedVersion == version && n.stage == nil {
			fl |= gofuse.FOPEN_KEEP_CACHE
		}
		n.cachedVersion = version
		n.mu.Unlock()
	}
	return h, fl, 0
}

// waitNoPassthrough waits up to d for passthrough handles to be released;
// true if some are still open.
func (n *node) waitNoPassthrough(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		n.mu.Lock()
		pt := n.openPassthrough > 0
		n.mu.Unlock()
		if !pt || time.Now().After(deadline) {
			return pt
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ioMode picks the handle's kernel io mode: the page cache. (A handle is
// never opened beside a passthrough one: see open.)
func (n *node) ioMode(h *fileHandle) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.openPassthrough > 0 {
		h.direct = true
		return gofuse.FOPEN_DIRECT_IO
	}
	n.openCached++
	return 0
}

// passthroughHandle is a read-only open served by the kernel from the
// local worker's cache file; the daemon sees no READ for it.
type passthroughHandle struct {
	n  *node
	lf *client.LocalFile
}

var (
	_ fs.FilePassthroughFder = (*passthroughHandle)(nil)
	_ fs.FileReader          = (*passthroughHandle)(nil)
	_ fs.FileReleaser        = (*passthroughHandle)(nil)
)

func (h *passthroughHandle) PassthroughFd() (int, bool) { return int(h.lf.File.Fd()), true }

// Read serves the case where the kernel did not accept the backing fd.
func (h *passthroughHandle) Read(ctx context.Context, dest []byte, off int64) (gofuse.ReadResult, syscall.Errno) {
	n, err := h.lf.File.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errno(err)
	}
	h.n.fsys.metrics.bytesShortCircuit.Add(float64(n))
	return gofuse.ReadResultData(dest[:n]), 0
}

func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	h.n.afterRelease(func() {
		h.n.mu.Lock()
		h.n.openPassthrough--
		last := h.n.openPassthrough == 0
		if last && h.n.pt == h.lf {
			h.n.pt = nil
		}
		h.n.mu.Unlock()
		if last {
			h.lf.Close() // ends the block leases
		}
	})
	return 0
}

// releaseGrace is how long after answering RELEASE the kernel may still
// hold the file's io mode (it drops it when it processes the reply).
const releaseGrace = 20 * time.Millisecond

// afterRelease runs fn once the kernel has surely processed the RELEASE
// reply; opens wait for it (waitReleases), so an open never picks an io
// mode (passthrough, page cache) the kernel still sees in conflict.
func (n *node) afterRelease(fn func()) {
	n.mu.Lock()
	n.releasing++
	n.mu.Unlock()
	time.AfterFunc(releaseGrace, func() {
		fn()
		n.mu.Lock()
		n.releasing--
		n.mu.Unlock()
	})
}

// waitReleases waits (up to d) for releases in their grace period.
func (n *node) waitReleases(d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		n.mu.Lock()
		r := n.releasing
		n.mu.Unlock()
		if r == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fileHandle reads through the client (or the stage) and writes to the
// node's stage.
type fileHandle struct {
	n      *node
	write  bool
	direct bool
	st     *stage // held while open for writing

	mu       sync.Mutex
	r        *client.Reader
	rctx     context.Context
	rcancel  context.CancelFunc
	lastSC   int64
	lastRem  int64
	lastUFS  int64
	released bool
}

var (
	_ fs.FileReader   = (*fileHandle)(nil)
	_ fs.FileWriter   = (*fileHandle)(nil)
	_ fs.FileFlusher  = (*fileHandle)(nil)
	_ fs.FileFsyncer  = (*fileHandle)(nil)
	_ fs.FileReleaser = (*fileHandle)(nil)
)

func (h *fileHandle) reader() (*client.Reader, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r != nil {
		return h.r, nil
	}
	h.rctx, h.rcancel = context.WithCancel(context.Background())
	r, err := h.n.fsys.c.OpenFile(h.rctx, h.n.path(), apiv1.ReadType_READ_TYPE_UNSPECIFIED)
	if err != nil {
		h.rcancel()
		return nil, err
	}
	h.r = r
	return r, nil
}

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (gofuse.ReadResult, syscall.Errno) {
	if st := h.n.currentStage(); st != nil {
		n, err := st.ReadAt(dest, off)
		if !errors.Is(err, errStageClosed) {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, errno(err)
			}
			h.n.fsys.metrics.bytesStage.Add(float64(n))
			return gofuse.ReadResultData(dest[:n]), 0
		}
		// Released (and committed) meanwhile: read Alcove.
	}
	r, err := h.reader()
	if err != nil {
		return nil, errno(err)
	}
	n, err := r.ReadAt(dest, off)
	h.countStats(r)
	if err != nil && !errors.Is(err, io.EOF) {
		h.n.fsys.logger.Error(err, "Read failed", "path", r.Info().GetPath(), "offset", off)
		return nil, errno(err)
	}
	return gofuse.ReadResultData(dest[:n]), 0
}

func (h *fileHandle) countStats(r *client.Reader) {
	sc, rem, ufs := r.Stats.ShortCircuit.Load(), r.Stats.Remote.Load(), r.Stats.UFS.Load()
	h.mu.Lock()
	dsc, drem, dufs := sc-h.lastSC, rem-h.lastRem, ufs-h.lastUFS
	h.lastSC, h.lastRem, h.lastUFS = sc, rem, ufs
	h.mu.Unlock()
	m := h.n.fsys.metrics
	if dsc > 0 {
		m.bytesShortCircuit.Add(float64(dsc))
	}
	if drem > 0 {
		m.bytesRemote.Add(float64(drem))
	}
	if dufs > 0 {
		m.bytesUFS.Add(float64(dufs))
	}
}

func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write || h.st == nil {
		return 0, syscall.EBADF
	}
	if e := h.n.fsys.checkSpace(ctx, off+int64(len(data))); e != 0 {
		return 0, e
	}
	n, err := h.st.WriteAt(data, off)
	h.n.fsys.metrics.bytesWritten.Add(float64(n))
	if err != nil {
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

func (h *fileHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.write || h.st == nil {
		return 0
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	return h.n.commit(octx, h.st)
}

func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.Flush(ctx)
}

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
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
	if !h.direct {
		h.n.afterRelease(func() {
			h.n.mu.Lock()
			h.n.openCached--
			h.n.mu.Unlock()
		})
	}
	if h.st != nil {
		octx, cancel := opCtx(ctx)
		defer cancel()
		return h.n.releaseStage(octx, h.st)
	}
	return 0
}

// stage is a local file holding a file's content while it is written:
// writes land here at any offset, reads of the node are served from here,
// and commit replaces the Alcove file with it.
type stage struct {
	mu     sync.RWMutex
	f      *os.File
	path   string
	size   int64
	dirty  bool
	closed bool
	refs   int // guarded by the node's mu
}

func (s *stage) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.size
}

// errStageClosed: the stage was committed and released during the read.
var errStageClosed = errors.New("staging file released")

func (s *stage) ReadAt(p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errStageClosed
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	return s.f.ReadAt(p, off)
}

func (s *stage) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.f.WriteAt(p, off)
	if end := off + int64(n); end > s.size {
		s.size = end
	}
	if n > 0 {
		s.dirty = true
	}
	return n, err
}

func (s *stage) Truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Truncate(size); err != nil {
		return err
	}
	s.size = size
	s.dirty = true
	return nil
}

func (n *node) currentStage() *stage {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stage
}

// openStage returns the node's stage with a reference, creating it (with
// the file's current content unless empty) if needed.
func (n *node) openStage(ctx context.Context, empty bool) (*stage, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stage != nil {
		n.stage.refs++
		return n.stage, 0
	}
	f, err := os.CreateTemp(n.fsys.cfg.StageDir, fmt.Sprintf("ino%d-", n.StableAttr().Ino))
	if err != nil {
		return nil, errno(err)
	}
	st := &stage{f: f, path: f.Name(), refs: 1}
	if !empty {
		r, err := n.fsys.c.OpenFile(ctx, n.path(), apiv1.ReadType_READ_TYPE_UNSPECIFIED)
		if err == nil {
			st.size, err = io.Copy(f, r)
			r.Close()
		}
		if err != nil {
			f.Close()
			os.Remove(st.path)
			return nil, errno(err)
		}
	}
	n.stage = st
	return st, 0
}

// releaseStage drops a reference; the last one commits what is left and
// removes the staging file.
func (n *node) releaseStage(ctx context.Context, st *stage) syscall.Errno {
	var e syscall.Errno
	n.mu.Lock()
	last := st.refs == 1
	n.mu.Unlock()
	if last {
		e = n.commit(ctx, st)
	}
	n.mu.Lock()
	st.refs--
	if st.refs > 0 {
		n.mu.Unlock()
		return e
	}
	if n.stage == st {
		n.stage = nil
	}
	n.mu.Unlock()
	st.mu.Lock()
	st.closed = true
	st.f.Close()
	st.mu.Unlock()
	os.Remove(st.path)
	return e
}

// commit replaces the Alcove file with the stage's content when it has
// changes: written to a temporary sibling, then renamed over the file, so
// a failed commit leaves the previous content in place.
func (n *node) commit(ctx context.Context, st *stage) syscall.Errno {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dirty {
		return 0
	}
	c := n.fsys.c
	p := n.path()
	old, err := c.GetStatus(ctx, p)
	if errors.Is(err, meta.ErrNotFound) {
		st.dirty = false // unlinked while open: the data goes with it
		return 0
	}
	if err != nil {
		return errno(err)
	}
	if old.GetFolder() {
		return syscall.EISDIR
	}
	tmp := meta.Join(meta.Parent(p), fmt.Sprintf("%s%d-%x", commitPrefix, old.GetFileId(), rand.Uint64()))
	w, err := c.Create(ctx, tmp, client.WriteOptions{Mode: old.GetMode() & 0o7777, WriteType: n.fsys.cfg.WriteType, BlockSize: old.GetBlockSizeBytes()})
	if err != nil {
		return errno(err)
	}
	if _, err := w.ReadFrom(io.NewSectionReader(st.f, 0, st.size)); err != nil {
		w.Abort()
		n.fsys.logger.Error(err, "Commit failed", "path", p)
		return errno(err)
	}
	if err := w.Close(); err != nil {
		n.fsys.logger.Error(err, "Commit failed", "path", p)
		return errno(err)
	}
	if err := c.Rename(ctx, tmp, p, true); err != nil {
		_ = c.Delete(context.WithoutCancel(ctx), tmp, false, false)
		return errno(err)
	}
	if old.GetOwner() != w.Info().GetOwner() || old.GetGroup() != w.Info().GetGroup() {
		o, g := old.GetOwner(), old.GetGroup()
		if err := c.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: p, Owner: &o, Group: &g}); err != nil {
			n.fsys.logger.Error(err, "Restore owner after commit", "path", p)
		}
	}
	n.mu.Lock()
	n.fileID = w.Info().GetFileId()
	n.mu.Unlock()
	st.dirty = false
	n.fsys.metrics.commits.Inc()
	n.fsys.metrics.commitBytes.Add(float64(st.size))
	return 0
}

// checkSpace fails a write with ENOSPC when the staged size can never fit
// the cache and the write type needs the cache (MUST_CACHE).
func (f *filesystem) checkSpace(ctx context.Context, size int64) syscall.Errno {
	if f.cfg.WriteType != apiv1.WriteType_MUST_CACHE || size < 1<<20 || size&(1<<20-1) > 1<<17 {
		return 0 // checked about once per MiB
	}
	var out gofuse.StatfsOut
	if e := f.statfs(ctx, &out); e != 0 {
		return 0
	}
	if total := int64(out.Blocks) * int64(out.Bsize); total > 0 && size > total {
		return syscall.ENOSPC
	}
	return 0
}
