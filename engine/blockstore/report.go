package blockstore

import (
	"sort"
	"time"
)

// SetPinned replaces the set of pinned files; their blocks are never evicted.
func (s *Store) SetPinned(fileIDs []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinned = toSet(fileIDs)
}

// Pin adds one file to the pinned set.
func (s *Store) Pin(fileID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinned[fileID] = struct{}{}
}

// SetUnpersisted replaces the master's set of files whose cached copy is the
// only copy; their blocks are evicted only as a last resort. asOf is when
// the master's answer was asked for: a local mark (MarkUnpersisted) the
// master knew about by then and no longer lists is cleared (the file was
// persisted, maybe by another worker, or deleted); marks the master may not
// know yet stay.
func (s *Store) SetUnpersisted(fileIDs []int64, asOf time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpersisted = toSet(fileIDs)
	for f, known := range s.localUnpersisted {
		if _, listed := s.unpersisted[f]; !listed && !known.IsZero() && known.Before(asOf) {
			delete(s.localUnpersisted, f)
		}
	}
}

// MarkUnpersisted marks a file cached here without a UFS copy, so its
// blocks are evicted last whatever SetUnpersisted says, until the master
// knows. known says the master has been told of a block of the file here
// (a committed block); until a call with known, the mark stays.
func (s *Store) MarkUnpersisted(fileID int64, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.localUnpersisted[fileID]
	switch {
	case known:
		s.localUnpersisted[fileID] = time.Now()
	case !ok:
		s.localUnpersisted[fileID] = t
	}
}

// MarkPersisted clears a file's unpersisted marks.
func (s *Store) MarkPersisted(fileID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.unpersisted, fileID)
	delete(s.localUnpersisted, fileID)
}

func (s *Store) isUnpersistedLocked(fileID int64) bool {
	_, a := s.unpersisted[fileID]
	_, b := s.localUnpersisted[fileID]
	return a || b
}

func toSet(ids []int64) map[int64]struct{} {
	m := make(map[int64]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}

// DrainEvents returns the blocks added and removed since the last drain
// (net: a block added then removed is only reported removed).
func (s *Store) DrainEvents() (added []BlockInfo, removed []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.added {
		added = append(added, b)
	}
	for id := range s.removed {
		removed = append(removed, id)
	}
	s.added = map[int64]BlockInfo{}
	s.removed = map[int64]struct{}{}
	sort.Slice(added, func(i, j int) bool { return added[i].ID < added[j].ID })
	sort.Slice(removed, func(i, j int) bool { return removed[i] < removed[j] })
	return added, removed
}

// Blocks lists every committed block (for registration) and clears the
// pending events, which the full list supersedes.
func (s *Store) Blocks() []BlockInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BlockInfo, 0, len(s.blocks))
	for _, b := range s.blocks {
		if b.state == stateCommitted && !b.doomed {
			out = append(out, BlockInfo{ID: b.id, Length: b.length, Tier: b.tier.cfg.Alias})
		}
	}
	s.added = map[int64]BlockInfo{}
	s.removed = map[int64]struct{}{}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Usage returns every tier's capacity and usage, fastest first.
func (s *Store) Usage() []TierUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TierUsage, len(s.tiers))
	for i, t := range s.tiers {
		out[i] = TierUsage{Alias: t.cfg.Alias, CapacityBytes: t.cfg.QuotaBytes, UsedBytes: t.used}
	}
	return out
}
