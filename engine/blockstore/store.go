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
// written, then committed or aborted. Readers hold a lease (Handle) while
// they read: a leased block is never evicted, moved or punched, so a held fd
// never reads a hole as zeros.
//
// The cache survives restarts of the worker. Each tier directory holds a
// manifest (.alcove-manifest, see manifest.go): an append-only log of block
// commits and drops, headed by the id of the cluster the cache belongs to.
// A commit fsyncs the block's data (non-MEM tiers), then appends and fsyncs
// its record; only then is the write acknowledged. Open replays the
// manifests: recorded blocks whose ranges are intact come back, and
// everything else in the cache files (blocks being written when the worker
// died, unrecorded files) is punched or removed, never served. A MEM tier
// keeps its manifest on its own tmpfs, so data and record live and die
// together (a worker restart keeps both; a reboot loses both).
//
// Restored blocks stay unreadable until the worker has registered them with
// its master and called Accept: a master of another cluster (or a
// reformatted one) makes Accept drop the whole cache, and blocks the master
// rejects (their file is gone, or the length or index does not fit it) are
// dropped one by one.
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
	"time"

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
	man   *manifest
	used  int64
	lru   *list.List // of *block, committed only; front = most recently used
	files map[int64]*cacheFile
}

type cacheFile struct {
	blocks    int // blocks of the file in this tier, any state
	blockSize int64
	// named: the file's name is durable (the tier directory was fsynced
	// after it was created). fsync of the file alone does not make a new
	// name durable (fsync(2)), and a manifest record naming a block of a
	// file that a power loss removed is a lost block.
	named bool
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
	unverified                   bool // restored at Open, not yet accepted by the master
	elem                         *list.Element
	written                      chan struct{} // closed when a writing block commits or is dropped
}

func (b *block) offset() int64 { return b.index * b.blockSize }

// Store is a tiered block store. It is safe for concurrent use.
type Store struct {
	log klog.Logger

	mu          sync.Mutex
	clusterID   string // the cluster the cached blocks belong to ("" unknown)
	tiers       []*tier
	blocks      map[int64]*block
	pinned      map[int64]struct{}
	unpersisted map[int64]struct{} // from the master
	// localUnpersisted are files cached here without a UFS copy yet, with
	// when the master last learned of a block of them here (zero: not yet).
	localUnpersisted map[int64]time.Time
	added            map[int64]BlockInfo
	removed          map[int64]struct{}

	evictions atomic.Int64
	lost      atomic.Int64

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Open creates a store over tiers, fastest first, and restores the blocks
// a previous run left committed in them (unreadable until Accept).
func Open(ctx context.Context, tiers []TierConfig) (*Store, error) {
	if len(tiers) == 0 {
		return nil, fmt.Errorf("open block store: %w: no tiers configured", meta.ErrInvalidArgument)
	}
	s := &Store{
		log:              klog.FromContext(ctx).WithName("blockstore"),
		blocks:           map[int64]*block{},
		pinned:           map[int64]struct{}{},
		unpersisted:      map[int64]struct{}{},
		localUnpersisted: map[int64]time.Time{},
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
		s.tiers = append(s.tiers, &tier{cfg: c, man: &manifest{dir: dir, sync: c.Alias != "MEM"}, lru: list.New(), files: map[int64]*cacheFile{}})
	}
	if err := s.restore(); err != nil {
		s.closeManifests()
		return nil, fmt.Errorf("open block store: %w", err)
	}
	go s.watermarkLoop()
	return s, nil
}

// restore rebuilds every tier; tiers recorded for different clusters
// (a tier directory swapped in from elsewhere) are all dropped.
func (s *Store) restore() error {
	restored := map[int64]bool{}
	ids := map[string]bool{}
	for _, t := range s.tiers {
		id, err := s.restoreTier(t, restored)
		if err != nil {
			return err
		}
		if id != "" || t.lru.Len() > 0 {
			ids[id] = true
		}
		if id != "" {
			s.clusterID = id
		}
	}
	if len(ids) > 1 {
		s.clusterID = "\x00mixed"
	}
	return nil
}

func (s *Store) closeManifests() {
	for _, t := range s.tiers {
		t.man.close()
	}
}

// Close stops background eviction and closes the manifests. Cache files
// and manifests stay for the next Open.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		s.closeManifests()
		s.mu.Unlock()
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
