package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/meta"
)

// reserveLocked finds a tier for n bytes: the highest tier with free room,
// else the highest tier where evicting unlocked, unpinned LRU blocks makes
// room, else the same allowing blocks of unpersisted files (data loss, last
// resort; never blocks of forFile itself, or writing a file bigger than
// the cache would silently drop its own first blocks). It charges n to the tier.
func (s *Store) reserveLocked(n, forFile int64) (*tier, error) {
	for _, t := range s.tiers {
		if t.used+n <= t.cfg.QuotaBytes {
			t.used += n
			return t, nil
		}
	}
	for _, lossy := range []bool{false, true} {
		for _, t := range s.tiers {
			if s.evictLocked(t, n, lossy, forFile) {
				t.used += n
				return t, nil
			}
		}
	}
	return nil, fmt.Errorf("reserve %d bytes: %w (every tier is full of pinned, in-use or in-flight blocks)", n, meta.ErrNoSpace)
}

func (s *Store) evictable(b *block) bool {
	if b.state != stateCommitted || b.locks > 0 || b.moving || b.doomed {
		return false
	}
	_, pinned := s.pinned[b.fileID]
	return !pinned
}

// evictLocked frees space in t until n more bytes fit under the quota. It
// evicts nothing unless that is enough. lossy also allows evicting blocks of
// unpersisted files other than keepFile, after all others.
func (s *Store) evictLocked(t *tier, n int64, lossy bool, keepFile int64) bool {
	target := t.cfg.QuotaBytes - n
	if t.used <= target {
		return true
	}
	if target < 0 {
		return false
	}
	need := t.used - target
	var victims []*block
	passes := []bool{false}
	if lossy {
		passes = append(passes, true)
	}
	for _, unpersistedPass := range passes {
		for e := t.lru.Back(); e != nil && need > 0; e = e.Prev() {
			b := e.Value.(*block)
			if !s.evictable(b) {
				continue
			}
			if up := s.isUnpersistedLocked(b.fileID); up != unpersistedPass || (up && b.fileID == keepFile) {
				continue
			}
			victims = append(victims, b)
			need -= b.length
		}
	}
	if need > 0 {
		return false
	}
	for _, b := range victims {
		if s.isUnpersistedLocked(b.fileID) {
			s.lost.Add(1)
			s.log.Info("WARNING: evicting the only copy of a block of an unpersisted file; its data is lost",
				"fileID", b.fileID, "blockID", b.id, "tier", t.cfg.Alias)
		}
		s.evictions.Add(1)
		s.log.V(3).Info("evict block", "blockID", b.id, "tier", t.cfg.Alias, "length", b.length)
		s.dropLocked(b)
	}
	return true
}

// dropLocked forgets b, frees its space and punches its range.
func (s *Store) dropLocked(b *block) {
	delete(s.blocks, b.id)
	if b.elem != nil {
		b.tier.lru.Remove(b.elem)
		b.elem = nil
	}
	if b.state == stateCommitted {
		delete(s.added, b.id)
		s.removed[b.id] = struct{}{}
		if err := b.tier.man.drop(b.id); err != nil {
			s.log.Error(err, "record dropped block", "blockID", b.id)
		}
	} else {
		close(b.written)
	}
	s.releaseSpaceLocked(b.tier, b.fileID, b.offset(), b.blockSize, b.length)
}

// releaseSpaceLocked uncharges n bytes of t and punches [off, off+size) of
// the file's cache file, deleting the file when it holds no more blocks.
func (s *Store) releaseSpaceLocked(t *tier, fileID, off, size, n int64) {
	t.used -= n
	cf := t.files[fileID]
	if cf == nil {
		return
	}
	cf.blocks--
	p := t.path(fileID)
	if cf.blocks <= 0 {
		delete(t.files, fileID)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error(err, "remove cache file", "path", p)
		}
		return
	}
	if err := punch(p, off, size); err != nil {
		s.log.Error(err, "punch block range", "path", p, "offset", off)
	}
}

// punch deallocates [off, off+size) of the file at p, keeping its size.
func punch(p string, off, size int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size); err != nil {
		return fmt.Errorf("punch hole in %s at %d+%d: %w", p, off, size, err)
	}
	return nil
}

// addFileLocked counts a new block of fileID in t, checking block size consistency.
func addFileLocked(t *tier, fileID, blockSize int64) error {
	cf := t.files[fileID]
	if cf == nil {
		cf = &cacheFile{blockSize: blockSize}
		t.files[fileID] = cf
	}
	if cf.blockSize != blockSize {
		if cf.blocks == 0 {
			delete(t.files, fileID)
		}
		return fmt.Errorf("%w: file %d is cached with block size %d, not %d", meta.ErrInvalidArgument, fileID, cf.blockSize, blockSize)
	}
	cf.blocks++
	return nil
}

// checkWatermarkLocked wakes the background evictor when t passed its high watermark.
func (s *Store) checkWatermarkLocked(t *tier) {
	if float64(t.used) > t.cfg.HighWatermark*float64(t.cfg.QuotaBytes) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// watermarkLoop evicts tiers above their high watermark down to their low
// watermark. It never evicts blocks of unpersisted files.
func (s *Store) watermarkLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		for _, t := range s.tiers {
			if float64(t.used) > t.cfg.HighWatermark*float64(t.cfg.QuotaBytes) {
				s.evictDownLocked(t, int64(t.cfg.LowWatermark*float64(t.cfg.QuotaBytes)))
			}
		}
		s.mu.Unlock()
	}
}

// evictDownLocked evicts persisted, evictable LRU blocks one by one until t
// is at or below target or nothing else can go.
func (s *Store) evictDownLocked(t *tier, target int64) {
	for e := t.lru.Back(); e != nil && t.used > target; {
		prev := e.Prev()
		b := e.Value.(*block)
		if s.evictable(b) && !s.isUnpersistedLocked(b.fileID) {
			s.evictions.Add(1)
			s.log.V(3).Info("evict block above high watermark", "blockID", b.id, "tier", t.cfg.Alias)
			s.dropLocked(b)
		}
		e = prev
	}
}

// syncName makes the name of fileID's cache file in t durable before a
// manifest record may point into it: the first block committed to a new
// cache file fsyncs the tier directory. A MEM tier needs none (its data and
// names vanish together).
func (s *Store) syncName(t *tier, fileID int64) error {
	if t.isMem() {
		return nil
	}
	s.mu.Lock()
	cf := t.files[fileID]
	named := cf == nil || cf.named
	s.mu.Unlock()
	if named {
		return nil
	}
	if err := fsutil.SyncDir(t.cfg.Dir); err != nil {
		return err
	}
	s.mu.Lock()
	cf.named = true // cf outlives this call: the caller's block counts in it
	s.mu.Unlock()
	return nil
}
