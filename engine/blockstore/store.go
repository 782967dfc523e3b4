// Package blockstore is the worker's tiered local block cache.
//
// Layout: every tier (MEM > SSD > HDD) is a directory with a quota. A tier
// keeps ONE sparse cache file per Alcove file, named by the file id
// (<tierdir>/<fileID>); block i of that file lives at offset i × blockSize.
// A file fully cached in one tier is therefore readable through a single fd
// at file offsets (what FUSE kernel passthrough needs). Removing a block
// punches its range out of the cache file; the file is deleted when no block
// of it remains in the tier.
//
// Blocks are created (space reserved, evicting LRU blocks as needed),
// written, then committed (fsync on non-MEM tiers) or aborted. Readers hold
// a lease (Handle) while they read: a leased block is never evicted, moved
// or punched, so a held fd never reads a hole as zeros.
//
// Persistence across restarts is not implemented yet: Open wipes stale cache
// files in the tier directories and the worker registers an empty store.
package blockstore

import (
	"container/list"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/meta"
)

// Default watermarks, as Alluxio's alluxio.worker.tieredstore.levelX.watermark.*.
const (
	DefaultHighWatermark = 0.95
	DefaultLowWatermark  = 0.7
)

// TierConfig describes one tier.
type TierConfig struct {
	Alias         string  // MEM, SSD or HDD
	Dir           string  // directory holding the tier's cache files
	QuotaBytes    int64   // capacity of the tier
	HighWatermark float64 // 0: DefaultHighWatermark
	LowWatermark  float64 // 0: DefaultLowWatermark
}

// BlockInfo describes a cached block.
type BlockInfo struct {
	ID     int64
	Length int64
	Tier   string
}

// TierUsage is a tier's capacity and usage (committed blocks plus reservations).
type TierUsage struct {
	Alias         string
	CapacityBytes int64
	UsedBytes     int64
}

type tier struct {
	cfg   TierConfig
	used  int64
	lru   *list.List // of *block, committed only; front = most recently used
	files map[int64]*cacheFile
}

type cacheFile struct {
	blocks    int // blocks of the file in this tier, any state
	blockSize int64
}

type blockState int

const (
	stateWriting blockState = iota
	stateCommitted
)

type block struct {
	id, fileID, index, blockSize int64
	length                       int64 // committed length, or bytes reserved while writing
	tier                         *tier
	state                        blockState
	locks                        int
	moving                       bool
	doomed                       bool // removed while in use: dropped when the last user leaves
	elem                         *list.Element
	written                      chan struct{} // closed when a writing block commits or is dropped
}

func (b *block) offset() int64 { return b.index * b.blockSize }

// Store is a tiered block store. It is safe for concurrent use.
type Store struct {
	log klog.Logger

	mu          sync.Mutex
	tiers       []*tier
	blocks      map[int64]*block
	pinned      map[int64]struct{}
	unpersisted map[int64]struct{} // from the master
	// localUnpersisted are files written here without a UFS copy yet.
	localUnpersisted map[int64]struct{}
	added            map[int64]BlockInfo
	removed          map[int64]struct{}

	evictions atomic.Int64
	lost      atomic.Int64

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Open creates a store over tiers, fastest first. It wipes stale cache files
// (numeric names) left in the tier directories by a previous run.
func Open(ctx context.Context, tiers []TierConfig) (*Store, error) {
	if len(tiers) == 0 {
		return nil, fmt.Errorf("open block store: %w: no tiers configured", meta.ErrInvalidArgument)
	}
	s := &Store{
		log:              klog.FromContext(ctx).WithName("blockstore"),
		blocks:           map[int64]*block{},
		pinned:           map[int64]struct{}{},
		unpersisted:      map[int64]struct{}{},
		localUnpersisted: map[int64]struct{}{},
		added:            map[int64]BlockInfo{},
		removed:          map[int64]struct{}{},
		kick:             make(chan struct{}, 1),
		stop:             make(chan struct{}),
		done:             make(chan struct{}),
	}
	seen := map[string]bool{}
	for _, c := range tiers {
		if c.Alias == "" || c.Dir == "" || c.QuotaBytes <= 0 {
			return nil, fmt.Errorf("open block store: %w: tier %q needs a directory and a positive quota", meta.ErrInvalidArgument, c.Alias)
		}
		if c.HighWatermark == 0 {
			c.HighWatermark = DefaultHighWatermark
		}
		if c.LowWatermark == 0 {
			c.LowWatermark = DefaultLowWatermark
		}
		if c.LowWatermark > c.HighWatermark || c.HighWatermark > 1 || c.LowWatermark < 0 {
			return nil, fmt.Errorf("open block store: %w: tier %s watermarks must satisfy 0 <= low (%v) <= high (%v) <= 1", meta.ErrInvalidArgument, c.Alias, c.LowWatermark, c.HighWatermark)
		}
		dir := filepath.Clean(c.Dir)
		if seen[dir] {
			return nil, fmt.Errorf("open block store: %w: tier directory %s used twice", meta.ErrInvalidArgument, dir)
		}
		seen[dir] = true
		c.Dir = dir
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create tier directory %s: %w", dir, err)
		}
		if err := wipeStale(dir); err != nil {
			return nil, err
		}
		s.tiers = append(s.tiers, &tier{cfg: c, lru: list.New(), files: map[int64]*cacheFile{}})
	}
	go s.watermarkLoop()
	return s, nil
}

// wipeStale removes cache files of a previous run. Only numeric names (file
// ids) are touched so a misconfigured directory loses nothing else.
func wipeStale(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list tier directory %s: %w", dir, err)
	}
	for _, e := range ents {
		if _, err := strconv.ParseInt(e.Name(), 10, 64); err != nil || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove stale cache file %s: %w", e.Name(), err)
		}
	}
	return nil
}

// Close stops background eviction. Cache files stay until the next Open.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

func (t *tier) path(fileID int64) string {
	return filepath.Join(t.cfg.Dir, strconv.FormatInt(fileID, 10))
}

func (t *tier) isMem() bool { return t.cfg.Alias == "MEM" }

// Path returns the cache file of fileID in the tier named alias (it may not exist).
func (s *Store) Path(alias string, fileID int64) string {
	for _, t := range s.tiers {
		if t.cfg.Alias == alias {
			return t.path(fileID)
		}
	}
	return ""
}

// Evictions returns how many blocks were evicted since Open.
func (s *Store) Evictions() int64 { return s.evictions.Load() }

// LostBlocks returns how many evicted blocks belonged to unpersisted files.
func (s *Store) LostBlocks() int64 { return s.lost.Load() }
