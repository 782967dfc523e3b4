package blockstore

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/alcove-io/alcove/engine/meta"
)

// Writer writes one new block sequentially. Finish it with Commit or Abort.
type Writer struct {
	s       *Store
	b       *block
	f       *os.File
	written int64
	done    bool
}

// CreateBlock reserves size bytes (0: blockSize) for a new block of a file
// with the given block size, in the highest tier with room, evicting LRU
// blocks as needed. It fails with an error wrapping meta.ErrAlreadyExists if
// the block exists or is being written, and meta.ErrNoSpace if nothing can
// be evicted.
func (s *Store) CreateBlock(blockID, blockSize, size int64) (*Writer, error) {
	if blockSize <= 0 || size < 0 || size > blockSize {
		return nil, fmt.Errorf("create block %d: %w: block size %d, size %d", blockID, meta.ErrInvalidArgument, blockSize, size)
	}
	if size == 0 {
		size = blockSize
	}
	fileID, index := meta.FileIDOf(blockID), meta.BlockIndexOf(blockID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blocks[blockID]; ok {
		return nil, fmt.Errorf("create block %d: %w", blockID, meta.ErrAlreadyExists)
	}
	t, err := s.reserveLocked(size, fileID)
	if err != nil {
		return nil, fmt.Errorf("create block %d: %w", blockID, err)
	}
	if err := addFileLocked(t, fileID, blockSize); err != nil {
		t.used -= size
		return nil, fmt.Errorf("create block %d: %w", blockID, err)
	}
	f, err := os.OpenFile(t.path(fileID), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		// index*blockSize is never written: nothing to punch.
		s.releaseSpaceLocked(t, fileID, index*blockSize, blockSize, size)
		return nil, fmt.Errorf("create block %d: open cache file: %w", blockID, err)
	}
	b := &block{id: blockID, fileID: fileID, index: index, blockSize: blockSize, length: size, tier: t, state: stateWriting, written: make(chan struct{})}
	s.blocks[blockID] = b
	s.checkWatermarkLocked(t)
	return &Writer{s: s, b: b, f: f}, nil
}

// Tier returns the alias of the tier the block is written to.
func (w *Writer) Tier() string { return w.b.tier.cfg.Alias }

// Written returns how many bytes were written so far.
func (w *Writer) Written() int64 { return w.written }

// Write appends p to the block. Writing past the reserved size fails.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write block %d: %w: writer finished", w.b.id, meta.ErrFailedPrecondition)
	}
	if w.written+int64(len(p)) > w.b.length {
		return 0, fmt.Errorf("write block %d: %w: %d bytes exceed the reserved %d", w.b.id, meta.ErrInvalidArgument, w.written+int64(len(p)), w.b.length)
	}
	n, err := w.f.WriteAt(p, w.b.offset()+w.written)
	w.written += int64(n)
	if err != nil {
		return n, fmt.Errorf("write block %d: %w", w.b.id, err)
	}
	return n, nil
}

// Commit makes the block visible with the written length and returns it.
// When it returns, the block survives a restart of the worker: its data
// (and, for a new cache file, the tier directory) is fsynced (unless in MEM)
// before its manifest record is appended, and the record is fsynced before
// Commit returns.
func (w *Writer) Commit() (BlockInfo, error) {
	if w.done {
		return BlockInfo{}, fmt.Errorf("commit block %d: %w: writer finished", w.b.id, meta.ErrFailedPrecondition)
	}
	var err error
	if !w.b.tier.isMem() {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.s.syncName(w.b.tier, w.b.fileID)
	}
	if err != nil {
		w.abortFinished()
		return BlockInfo{}, fmt.Errorf("commit block %d: %w", w.b.id, err)
	}
	w.done = true
	s, b := w.s, w.b
	s.mu.Lock()
	b.tier.used -= b.length - w.written
	b.length = w.written
	if !b.doomed {
		err = b.tier.man.add(b.id, b.blockSize, b.length)
	}
	if err != nil {
		s.dropLocked(b)
		s.mu.Unlock()
		return BlockInfo{}, fmt.Errorf("commit block %d: %w", b.id, err)
	}
	b.state = stateCommitted
	close(b.written)
	b.elem = b.tier.lru.PushFront(b)
	info := BlockInfo{ID: b.id, Length: b.length, Tier: b.tier.cfg.Alias}
	if b.doomed {
		s.dropLocked(b)
		s.mu.Unlock()
		return BlockInfo{}, fmt.Errorf("commit block %d: %w: removed while being written", b.id, meta.ErrAborted)
	}
	delete(s.removed, b.id)
	s.added[b.id] = info
	s.compactLocked(b.tier)
	s.mu.Unlock()
	if err := b.tier.man.flush(); err != nil {
		s.Remove(b.id)
		return BlockInfo{}, fmt.Errorf("commit block %d: %w", b.id, err)
	}
	return info, nil
}

// Abort discards the block. It is a no-op after Commit or Abort.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.f.Close()
	w.abortFinished()
	return nil
}

func (w *Writer) abortFinished() {
	w.done = true
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.dropLocked(w.b)
}

// WaitBlock waits while the block is being written (by a UFS read-through
// or another load) and reports whether it is now committed here; false
// when it is not cached, or its write was aborted.
func (s *Store) WaitBlock(ctx context.Context, blockID int64) (bool, error) {
	s.mu.Lock()
	b, ok := s.blocks[blockID]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	select {
	case <-b.written:
	case <-ctx.Done():
		return false, fmt.Errorf("wait for block %d: %w", blockID, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.blocks[blockID]
	return ok && cur.readable(), nil
}

// Handle is a leased, open cached block: File holds the block at Offset
// (the file's cache file, readable at the whole file's offsets). The block
// is not evicted, moved or punched until Release.
type Handle struct {
	File      *os.File
	Offset    int64
	Length    int64
	BlockSize int64 // the file's block size (Offset is index × BlockSize)
	Tier      string

	s    *Store
	b    *block
	once sync.Once
}

// OpenBlock leases a committed block and opens its cache file read-only.
// It fails with an error wrapping meta.ErrNotFound if the block is not cached.
func (s *Store) OpenBlock(blockID int64) (*Handle, error) {
	s.mu.Lock()
	b, ok := s.blocks[blockID]
	if !ok || !b.readable() {
		s.mu.Unlock()
		return nil, fmt.Errorf("open block %d: %w: not cached on this worker", blockID, meta.ErrNotFound)
	}
	b.locks++
	b.tier.lru.MoveToFront(b.elem)
	t := b.tier
	s.mu.Unlock()
	h := &Handle{Offset: b.offset(), Length: b.length, BlockSize: b.blockSize, Tier: t.cfg.Alias, s: s, b: b}
	f, err := os.Open(t.path(b.fileID))
	if err != nil {
		h.Release()
		return nil, fmt.Errorf("open block %d: %w", blockID, err)
	}
	h.File = f
	return h, nil
}

// Release ends the lease (the File stays open). Idempotent.
func (h *Handle) Release() {
	h.once.Do(func() { h.s.unlock(h.b) })
}

// Close closes the File and releases the lease.
func (h *Handle) Close() error {
	err := h.File.Close()
	h.Release()
	return err
}

func (s *Store) unlock(b *block) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.locks--
	if b.locks == 0 && b.doomed && !b.moving {
		s.dropLocked(b)
	}
}

// Remove drops a block from the cache; a block in use is dropped when its
// last user leaves. Removing an absent block succeeds.
func (s *Store) Remove(blockID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.blocks[blockID]; ok {
		s.removeLocked(b)
	}
}

func (s *Store) removeLocked(b *block) {
	if b.locks > 0 || b.moving || b.state == stateWriting {
		b.doomed = true
		return
	}
	s.dropLocked(b)
}

// readable reports whether b may be served: committed, not removed, and
// (when restored) accepted by the master.
func (b *block) readable() bool {
	return b.state == stateCommitted && !b.doomed && !b.unverified
}

// Get returns a committed block's info.
func (s *Store) Get(blockID int64) (BlockInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blocks[blockID]
	if !ok || !b.readable() {
		return BlockInfo{}, false
	}
	return BlockInfo{ID: b.id, Length: b.length, Tier: b.tier.cfg.Alias}, true
}
