package blockstore

import (
	"fmt"
	"io"
	"os"

	"github.com/alcove-io/alcove/engine/meta"
)

// Promote moves a committed block to the top tier (CACHE_PROMOTE). It
// reports whether the block is now in the top tier; it leaves the block
// where it is (false, nil) when the top tier has no room or a reader holds
// the block while it is copied.
func (s *Store) Promote(blockID int64) (bool, error) {
	s.mu.Lock()
	b, ok := s.blocks[blockID]
	if !ok || !b.readable() {
		s.mu.Unlock()
		return false, fmt.Errorf("promote block %d: %w: not cached on this worker", blockID, meta.ErrNotFound)
	}
	top := s.tiers[0]
	if b.tier == top {
		top.lru.MoveToFront(b.elem)
		s.mu.Unlock()
		return true, nil
	}
	if b.moving || (top.used+b.length > top.cfg.QuotaBytes && !s.evictLocked(top, b.length, false, 0)) {
		s.mu.Unlock()
		return false, nil
	}
	if err := addFileLocked(top, b.fileID, b.blockSize); err != nil {
		s.mu.Unlock()
		return false, fmt.Errorf("promote block %d: %w", blockID, err)
	}
	top.used += b.length
	b.moving = true
	src := b.tier
	s.mu.Unlock()

	err := copyRange(src.path(b.fileID), top.path(b.fileID), b.offset(), b.length, !top.isMem())
	if err == nil {
		err = s.syncName(top, b.fileID)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	b.moving = false
	if err == nil && b.locks == 0 && !b.doomed {
		// Recorded in the top tier before the source drops it: a crash in
		// between leaves two records, and restore keeps the top one.
		err = top.man.add(b.id, b.blockSize, b.length)
		if err == nil {
			err = top.man.flush()
		}
	}
	if err != nil || b.locks > 0 || b.doomed {
		s.releaseSpaceLocked(top, b.fileID, b.offset(), b.blockSize, b.length)
		if b.doomed && b.locks == 0 {
			s.dropLocked(b)
		}
		if err != nil {
			return false, fmt.Errorf("promote block %d: %w", blockID, err)
		}
		return false, nil
	}
	src.lru.Remove(b.elem)
	if err := src.man.drop(b.id); err != nil {
		s.log.Error(err, "record promoted block's old tier", "blockID", b.id)
	}
	s.releaseSpaceLocked(src, b.fileID, b.offset(), b.blockSize, b.length)
	b.tier = top
	b.elem = top.lru.PushFront(b)
	info := BlockInfo{ID: b.id, Length: b.length, Tier: top.cfg.Alias}
	delete(s.removed, b.id)
	s.added[b.id] = info
	return true, nil
}

func copyRange(srcPath, dstPath string, off, n int64, sync bool) error {
	src, err := os.Open(srcPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", srcPath, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(dstPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", dstPath, err)
	}
	buf := make([]byte, min(n, 1<<20))
	if _, err := io.CopyBuffer(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, n), buf); err != nil {
		dst.Close()
		return fmt.Errorf("copy block to %s: %w", dstPath, err)
	}
	if sync {
		if err := dst.Sync(); err != nil {
			dst.Close()
			return fmt.Errorf("fsync %s: %w", dstPath, err)
		}
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dstPath, err)
	}
	return nil
}
