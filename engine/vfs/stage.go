package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// stage is a local file holding a file's content while it is written:
// writes land here at any offset, reads of the node are served from here,
// and commit replaces the Alcove file with it.
type stage struct {
	// mu is taken before the node's mu, never while holding it (a commit
	// holds mu across the upload and then updates the node).
	mu     sync.RWMutex
	f      *os.File
	path   string
	size   int64 // guarded by mu
	closed bool  // guarded by mu
	// dirty: written since the last commit. Set and cleared under mu;
	// atomic so releaseStage can check it under the node's mu.
	dirty atomic.Bool
	refs  int // open references; guarded by the node's mu
	// stream sends a fresh file's in-order writes to a worker as they
	// come (nil: none); guarded by mu.
	stream *stream
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
	if s.stream != nil {
		if err != nil {
			s.stream.stop()
		} else {
			s.stream.write(p, off)
		}
	}
	if n > 0 {
		s.dirty.Store(true)
	}
	return n, err
}

func (s *stage) Truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Truncate(size); err != nil {
		return err
	}
	if s.stream != nil {
		s.stream.truncate(size)
	}
	s.size = size
	s.dirty.Store(true)
	return nil
}

func (s *stage) close() {
	s.mu.Lock()
	if s.stream != nil {
		s.stream.stop()
	}
	s.closed = true
	s.f.Close()
	s.mu.Unlock()
	os.Remove(s.path)
}

func (n *Node) currentStage() *stage {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stage
}

// openStage returns the node's stage with a reference, creating it (with
// the file's current content unless empty) if needed.
func (n *Node) openStage(ctx context.Context, empty bool) (*stage, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stage != nil {
		n.stage.refs++
		return n.stage, 0
	}
	f, err := os.CreateTemp(n.v.cfg.StageDir, fmt.Sprintf("ino%d-", n.ino))
	if err != nil {
		return nil, errno(err)
	}
	st := &stage{f: f, path: f.Name(), refs: 1}
	// A fresh file is incomplete until a commit: even an empty one
	// must be committed. Its writes stream to a worker as they come.
	if n.fresh != nil {
		st.dirty.Store(true)
		st.stream = newStream(n.v.c, n.fresh, n.v.cfg.WriteType)
	}
	if !empty {
		err := n.copyInto(ctx, f, &st.size)
		if err != nil {
			f.Close()
			os.Remove(st.path)
			return nil, errno(err)
		}
	}
	n.stage = st
	return st, 0
}

// copyInto copies the file's committed content into f; n.mu is held.
func (n *Node) copyInto(ctx context.Context, f *os.File, size *int64) error {
	info, e := n.statusOf(ctx, n.orphaned, n.fileID)
	if e != 0 {
		return e
	}
	r, err := n.v.c.OpenInfo(ctx, info, apiv1.ReadType_READ_TYPE_UNSPECIFIED)
	if err != nil {
		return err
	}
	defer r.Close()
	*size, err = copySparse(f, r, info)
	return err
}

// releaseStage drops a reference; the last one commits what is left and
// removes the staging file. Only the holder of the last reference
// commits, and it looks again after the commit: a writer that opened the
// stage during the commit holds a reference of its own then (and commits
// later), one that wrote and released meanwhile left it dirty.
func (n *Node) releaseStage(ctx context.Context, st *stage) syscall.Errno {
	var e syscall.Errno
	for {
		n.mu.Lock()
		if st.refs > 1 {
			st.refs--
			n.mu.Unlock()
			return e
		}
		if n.orphaned && n.stage == st {
			// No name to commit to: the stage is the file's content for
			// the handles still open, and goes at the last close
			// (releaseOrphan).
			st.refs = 0
			n.mu.Unlock()
			return e
		}
		if e != 0 || !st.dirty.Load() {
			st.refs = 0
			if n.stage == st {
				n.stage = nil
			}
			n.mu.Unlock()
			st.close()
			return e
		}
		n.mu.Unlock()
		e = n.commit(ctx, st)
	}
}

// commit replaces the Alcove file with the stage's content when it has
// changes: written to a temporary sibling, then renamed over the file, so
// a failed commit leaves the previous content in place.
func (n *Node) commit(ctx context.Context, st *stage) syscall.Errno {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dirty.Load() {
		return 0
	}
	defer n.v.mutating()()
	c := n.v.c
	if n.gone() {
		return 0 // an orphan: its content stays in the stage until the last close
	}
	p, ok := n.path()
	if !ok {
		st.dirty.Store(false) // removed behind the mount's back: the data goes with it
		return 0
	}
	n.mu.Lock()
	fresh := n.fresh
	n.mu.Unlock()
	if fresh != nil {
		if e, done := n.commitFresh(ctx, st, p, fresh); done {
			return e
		}
	}
	old, err := c.GetStatus(ctx, p)
	if errors.Is(err, meta.ErrNotFound) {
		st.dirty.Store(false) // removed behind the mount's back
		return 0
	}
	if err != nil {
		return errno(err)
	}
	if old.GetFolder() {
		return syscall.EISDIR
	}
	tmp := meta.Join(meta.Parent(p), fmt.Sprintf("%s%d-%x", commitPrefix, old.GetFileId(), rand.Uint64()))
	w, err := c.Create(ctx, tmp, client.WriteOptions{Mode: old.GetMode() & 0o7777, ExactMode: true, WriteType: n.v.cfg.WriteType,
		BlockSize: old.GetBlockSizeBytes(), Owner: old.GetOwner(), Group: old.GetGroup()})
	if err != nil {
		return errno(err)
	}
	if err := writeSparse(w, st.f, st.size, w.Info().GetBlockSizeBytes()); err != nil {
		w.Abort()
		n.v.logger.Error(err, "Commit failed", "path", p)
		return errno(err)
	}
	if err := w.Close(); err != nil {
		n.v.logger.Error(err, "Commit failed", "path", p)
		return errno(err)
	}
	// The new content takes over the file's identity: inode number,
	// owner, mode and atime stay (the master moves them in one entry).
	if err := c.RenameWith(ctx, tmp, p, client.RenameOptions{Overwrite: true, KeepIdentity: true}); err != nil {
		_ = c.DeleteWith(context.WithoutCancel(ctx), tmp, client.DeleteOptions{})
		return errno(err)
	}
	n.mu.Lock()
	n.fileID = w.Info().GetFileId()
	n.mu.Unlock()
	st.dirty.Store(false)
	n.v.metrics.Commits.Inc()
	n.v.metrics.CommitBytes.Add(float64(st.size))
	return 0
}

// commitFresh completes the file this VFS created at p (incomplete
// since) with the stage's content: the stream that carried the writes
// already, when it is intact, else the stage written into the same file
// (a worker stream and CompleteFile; no temporary, no rename). A failure
// leaves the file incomplete for the next commit. Not done: commit as any
// other file (a temporary sibling renamed over it) — the file was moved
// since it was created (the write token binds its old UFS location), or
// the worker refused the create's write token (expired: the file was held
// open longer than a token lives). st.mu is held.
func (n *Node) commitFresh(ctx context.Context, st *stage, p string, info *apiv1.FileInfo) (e syscall.Errno, done bool) {
	var w *client.Writer
	if st.stream != nil {
		if info.GetPath() != p {
			st.stream.stop() // it went to the old path
		}
		var err error
		w, err = st.stream.finish(st.size)
		st.stream = nil
		if err != nil && !errors.Is(err, errStreamBroken) {
			return n.freshFailed(st, p, err), true
		}
	}
	if w == nil && info.GetPath() == p {
		var err error
		if w, err = n.v.c.WriteCreated(ctx, info, n.v.cfg.WriteType); err == nil {
			if err = writeSparse(w, st.f, st.size, info.GetBlockSizeBytes()); err == nil {
				err = w.Close()
			}
		}
		if err != nil {
			if w != nil {
				w.Cancel()
			}
			if !errors.Is(err, meta.ErrPermission) && !errors.Is(err, meta.ErrUnauthenticated) {
				return n.freshFailed(st, p, err), true
			}
			w = nil
		}
	}
	n.mu.Lock()
	n.fresh = nil
	if w != nil {
		n.fileID = w.Info().GetFileId()
	}
	n.mu.Unlock()
	if w == nil {
		return 0, false
	}
	st.dirty.Store(false)
	n.v.metrics.Commits.Inc()
	n.v.metrics.CommitBytes.Add(float64(st.size))
	return 0, true
}

// freshFailed is a failed commit of a fresh file: the file stays
// incomplete for the next commit, unless it was removed behind the
// mount's back (the data goes with it, as for any file).
func (n *Node) freshFailed(st *stage, p string, err error) syscall.Errno {
	if errors.Is(err, meta.ErrNotFound) {
		n.mu.Lock()
		n.fresh = nil
		n.mu.Unlock()
		st.dirty.Store(false)
		return 0
	}
	n.v.logger.Error(err, "Commit failed", "path", p)
	return errno(err)
}

// checkSpace fails a write of n bytes at off into st with ENOSPC when the
// staged data can never fit the cache and the write type needs the cache
// (MUST_CACHE). Holes take no space: the stage's allocated bytes count,
// not its size.
func (v *VFS) checkSpace(ctx context.Context, st *stage, off, n int64) syscall.Errno {
	end := off + n
	if v.cfg.WriteType != apiv1.WriteType_MUST_CACHE || end < 1<<20 || end&(1<<20-1) > 1<<17 {
		return 0 // checked about once per MiB
	}
	need := st.allocated() + n
	if total := v.cacheCapacity(ctx); total > 0 && need > total {
		return syscall.ENOSPC
	}
	return 0
}

// capacityTTL is how long checkSpace trusts the cache's capacity: it asks
// the master for the workers, and a sequential writer passes a MiB
// boundary with every 1 MiB write.
const capacityTTL = time.Second

// cacheCapacity is the cache's total capacity as statfs reports it (0:
// unknown), at most capacityTTL old.
func (v *VFS) cacheCapacity(ctx context.Context) int64 {
	v.capMu.Lock()
	defer v.capMu.Unlock()
	if time.Since(v.capAt) < capacityTTL {
		return v.capTotal
	}
	var out Statfs
	if e := v.statfs(ctx, &out); e != 0 {
		return 0
	}
	v.capTotal, v.capAt = int64(out.Blocks)*int64(out.Bsize), time.Now()
	return v.capTotal
}
