package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/engine/meta"
)

// restoreTier rebuilds t's index from its manifest: every block added and
// not dropped whose range in its cache file is fully allocated comes back
// committed but unverified (see Accept). Everything else in the tier's cache
// files — blocks being written when the worker died, ranges punched while
// their drop record was lost, files no record names — is punched or
// removed, so it can never be served. restored says which blocks an earlier
// (faster) tier already restored; a second copy is discarded. The manifest
// is compacted to the blocks kept. It returns the manifest's cluster id.
func (s *Store) restoreTier(t *tier, restored map[int64]bool) (string, error) {
	dir := t.cfg.Dir
	clusterID, recs, err := loadManifest(dir)
	if err != nil {
		return "", err
	}
	liveIdx := map[int64]int{}
	var order []manifestRecord
	for _, r := range recs {
		if r.op == opDrop {
			if i, ok := liveIdx[r.blockID]; ok {
				order[i].op = opDrop
				delete(liveIdx, r.blockID)
			}
			continue
		}
		if i, ok := liveIdx[r.blockID]; ok {
			order[i].op = opDrop // superseded by this later add
		}
		liveIdx[r.blockID] = len(order)
		order = append(order, r)
	}
	keep := map[int64][]manifestRecord{} // file id → its blocks kept in this tier
	var kept []manifestRecord
	for _, r := range order {
		if r.op != opAdd || restored[r.blockID] || !s.restorable(t, r) {
			continue
		}
		f := meta.FileIDOf(r.blockID)
		if prev := keep[f]; len(prev) > 0 && prev[0].blockSize != r.blockSize {
			continue
		}
		keep[f] = append(keep[f], r)
		kept = append(kept, r)
	}
	if err := discardUnrecorded(t, keep); err != nil {
		return "", err
	}
	for _, r := range kept {
		restored[r.blockID] = true
		b := &block{id: r.blockID, fileID: meta.FileIDOf(r.blockID), index: meta.BlockIndexOf(r.blockID), blockSize: r.blockSize,
			length: r.length, tier: t, state: stateCommitted, unverified: true, written: closedChan}
		if err := addFileLocked(t, b.fileID, b.blockSize); err != nil {
			return "", err
		}
		t.files[b.fileID].named = true // the manifest rewrite below fsyncs the directory
		t.used += b.length
		b.elem = t.lru.PushFront(b)
		s.blocks[b.id] = b
		// Evicted last until the master's first answer says which of
		// these files are persisted.
		s.localUnpersisted[b.fileID] = time.Now()
	}
	if err := t.man.rewrite(clusterID, kept); err != nil {
		return "", err
	}
	if len(recs) > 0 || len(kept) > 0 {
		s.log.Info("restored cached blocks", "tier", t.cfg.Alias, "dir", dir, "blocks", len(kept), "bytes", t.used, "clusterID", clusterID)
	}
	return clusterID, nil
}

// closedChan is the written channel of restored blocks (never being written).
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// restorable checks a manifest add against the cache file: a sane block
// whose whole range is allocated (no hole: it was not punched).
func (s *Store) restorable(t *tier, r manifestRecord) bool {
	if r.blockID <= 0 || r.blockSize <= 0 || r.length <= 0 || r.length > r.blockSize {
		return false
	}
	off := meta.BlockIndexOf(r.blockID) * r.blockSize
	f, err := os.Open(t.path(meta.FileIDOf(r.blockID)))
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < off+r.length {
		return false
	}
	hole, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
	if err != nil || hole < off+r.length {
		s.log.Info("discarding a recorded block whose range has a hole", "blockID", r.blockID, "tier", t.cfg.Alias)
		return false
	}
	return true
}

// discardUnrecorded removes cache files (numeric names; nothing else in the
// directory is touched) that hold no kept block and punches every range of
// the others that no kept block covers.
func discardUnrecorded(t *tier, keep map[int64][]manifestRecord) error {
	ents, err := os.ReadDir(t.cfg.Dir)
	if err != nil {
		return fmt.Errorf("list tier directory %s: %w", t.cfg.Dir, err)
	}
	for _, e := range ents {
		fileID, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(t.cfg.Dir, e.Name())
		blocks := keep[fileID]
		if len(blocks) == 0 {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove unrecorded cache file %s: %w", p, err)
			}
			continue
		}
		if err := punchGaps(p, blocks); err != nil {
			return err
		}
	}
	return nil
}

// punchGaps punches every range of the cache file at p outside blocks.
func punchGaps(p string, blocks []manifestRecord) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("stat cache file %s: %w", p, err)
	}
	sorted := append([]manifestRecord(nil), blocks...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].blockID < sorted[j].blockID })
	var pos int64
	for _, r := range append(sorted, manifestRecord{}) {
		start, end := st.Size(), st.Size()
		if r.blockID != 0 {
			start = meta.BlockIndexOf(r.blockID) * r.blockSize
			end = start + r.length
		}
		if start > pos {
			if err := punch(p, pos, start-pos); err != nil {
				return err
			}
		}
		pos = max(pos, end)
	}
	return nil
}

// ClusterID is the cluster id the cache was recorded for ("" when none).
func (s *Store) ClusterID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusterID
}

// Accept settles the cache with the master of cluster clusterID after a
// registration. When clusterID differs from the recorded one (a reformatted
// master, or another cluster), every block is dropped: its block id may
// name another file's bytes there. Otherwise the blocks in rejected (which
// the master says do not belong to its namespace) are dropped and every
// other restored block becomes readable. It reports whether the cache was
// wiped.
func (s *Store) Accept(clusterID string, rejected []int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if clusterID != s.clusterID {
		if len(s.blocks) > 0 {
			s.log.Info("cache belongs to another cluster (a reformatted or different master): dropping every cached block",
				"recorded", s.clusterID, "master", clusterID, "blocks", len(s.blocks))
		}
		for _, b := range s.blocks {
			s.removeLocked(b)
		}
		for _, t := range s.tiers {
			if err := t.man.rewrite(clusterID, s.tierRecordsLocked(t)); err != nil {
				return true, err
			}
		}
		s.clusterID = clusterID
		return true, nil
	}
	for _, id := range rejected {
		if b, ok := s.blocks[id]; ok {
			s.removeLocked(b)
		}
	}
	for _, b := range s.blocks {
		b.unverified = false
	}
	return false, nil
}

// tierRecordsLocked lists t's committed blocks as manifest adds.
func (s *Store) tierRecordsLocked(t *tier) []manifestRecord {
	var out []manifestRecord
	for e := t.lru.Back(); e != nil; e = e.Prev() {
		b := e.Value.(*block)
		if b.state == stateCommitted && !b.doomed {
			out = append(out, manifestRecord{op: opAdd, blockID: b.id, blockSize: b.blockSize, length: b.length})
		}
	}
	return out
}

// compactLocked rewrites t's manifest when dead records dominate it.
func (s *Store) compactLocked(t *tier) {
	if !t.man.needsCompaction(t.lru.Len()) {
		return
	}
	if err := t.man.rewrite(s.clusterID, s.tierRecordsLocked(t)); err != nil {
		s.log.Error(err, "compact block manifest", "tier", t.cfg.Alias)
	}
}
