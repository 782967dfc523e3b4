package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

type cacheTask struct {
	blockID, length, blockSize int64
	src                        *apiv1.UfsBlockSource
}

// asyncCacher loads whole blocks from the UFS in the background after
// partial reads, on a bounded pool, at most once per block in flight.
type asyncCacher struct {
	w        *Worker
	ctx      context.Context
	queue    chan cacheTask
	mu       sync.Mutex
	inflight map[int64]bool
	wg       sync.WaitGroup
	once     sync.Once
}

const asyncCacheQueue = 1024

func newAsyncCacher(ctx context.Context, w *Worker, threads int) *asyncCacher {
	c := &asyncCacher{w: w, ctx: ctx, queue: make(chan cacheTask, asyncCacheQueue), inflight: map[int64]bool{}}
	for range threads {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

func (c *asyncCacher) submit(t cacheTask) {
	if _, ok := c.w.store.Get(t.blockID); ok || c.ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[t.blockID] {
		return
	}
	select {
	case c.queue <- t:
		c.inflight[t.blockID] = true
	default:
		c.w.metrics.asyncCacheDropped.Inc()
	}
}

func (c *asyncCacher) run() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case t := <-c.queue:
			if _, _, err := c.w.loadBlock(c.ctx, t); err != nil && !errors.Is(err, meta.ErrAlreadyExists) {
				c.w.log.V(1).Info("async cache failed", "blockID", t.blockID, "err", err)
			}
			c.mu.Lock()
			delete(c.inflight, t.blockID)
			c.mu.Unlock()
		}
	}
}

// stop waits for the workers; the context given to newAsyncCacher must be canceled.
func (c *asyncCacher) stop() { c.once.Do(c.wg.Wait) }

// loadBlock reads a whole block from the UFS into the cache and commits it.
func (w *Worker) loadBlock(ctx context.Context, t cacheTask) (tier string, already bool, err error) {
	if info, ok := w.store.Get(t.blockID); ok {
		return info.Tier, true, nil
	}
	if t.src == nil || !t.src.GetPersisted() {
		return "", false, fmt.Errorf("cache block %d: %w: not cached here and its file was never persisted", t.blockID, meta.ErrDataLost)
	}
	if t.length <= 0 || t.blockSize <= 0 || t.length > t.blockSize {
		return "", false, fmt.Errorf("cache block %d: %w: block length %d, block size %d", t.blockID, meta.ErrInvalidArgument, t.length, t.blockSize)
	}
	fs, p, err := w.resolveUFS(ctx, t.src.GetUfsPath(), t.src.GetMountId())
	if err != nil {
		return "", false, fmt.Errorf("cache block %d: %w", t.blockID, err)
	}
	bw, err := w.store.CreateBlock(t.blockID, t.blockSize, t.length)
	if err != nil {
		return "", false, err
	}
	r, err := ufs.OpenRangeMatching(ctx, fs, p, t.src.GetBlockOffset(), t.length, t.src.GetFingerprint())
	if err != nil {
		bw.Abort()
		return "", false, fmt.Errorf("cache block %d: %w", t.blockID, err)
	}
	defer r.Close()
	// Writes of whole huge pages: tmpfs zeroes the rest of a fresh huge
	// page that a smaller write leaves, only for the next write to cover
	// it. (A UFS reader with WriteTo, like S3's, writes its own parts.)
	buf := chunkPool.Get(maxChunkSize)
	defer chunkPool.Put(buf)
	n, err := io.CopyBuffer(bw, r, *buf)
	w.metrics.bytesReadUFS.Add(float64(n))
	if err == nil && n != t.length {
		err = fmt.Errorf("%w: UFS file %s holds %d bytes of the block, want %d", meta.ErrFailedPrecondition, p, n, t.length)
	}
	if err != nil {
		bw.Abort()
		return "", false, fmt.Errorf("cache block %d: %w", t.blockID, err)
	}
	tier = bw.Tier()
	w.commitCached(ctx, bw)
	return tier, false, nil
}

// CacheBlock implements apiv1.BlockWorkerServer.
func (s *blockService) CacheBlock(ctx context.Context, req *apiv1.CacheBlockRequest) (*apiv1.CacheBlockResponse, error) {
	t := cacheTask{blockID: req.GetBlockId(), length: req.GetBlockLength(), blockSize: req.GetBlockSizeBytes(), src: req.GetUfs()}
	if err := s.w.authorizeUFS(req.GetBlockToken(), t.blockID, t.blockSize, t.src); err != nil {
		return nil, meta.ToStatus(fmt.Errorf("cache %w", err))
	}
	tier, already, err := s.w.loadBlock(ctx, t)
	// A read-through or another load is writing the block right now: the
	// caller wants it cached, so wait for that writer (and take over if it
	// was aborted). The async cacher does not wait: it just skips.
	for try := 0; errors.Is(err, meta.ErrAlreadyExists) && try < 3; try++ {
		if _, werr := s.w.store.WaitBlock(ctx, t.blockID); werr != nil {
			return nil, meta.ToStatus(werr)
		}
		tier, already, err = s.w.loadBlock(ctx, t)
	}
	if errors.Is(err, meta.ErrAlreadyExists) {
		err = fmt.Errorf("cache block %d: %w: its other writers keep failing", t.blockID, meta.ErrAborted)
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	for try := 0; already; try++ {
		// The caller asks because the master does not list this copy: a
		// free of it may still be queued for the next heartbeat. Report
		// it again, which cancels that free (see freeGuard), unless a free
		// removed it since the look: then load it afresh.
		var info blockstore.BlockInfo
		held, done := s.w.frees.holding(t.blockID, func() (ok bool) { info, ok = s.w.store.Get(t.blockID); return ok })
		if held {
			_, err := s.w.commitBlock(ctx, info, false)
			done()
			if err != nil {
				return nil, meta.ToStatus(err)
			}
			break
		}
		if try == 2 {
			return nil, meta.ToStatus(fmt.Errorf("cache block %d: %w: freed while loaded, three times", t.blockID, meta.ErrAborted))
		}
		if tier, already, err = s.w.loadBlock(ctx, t); err != nil {
			return nil, meta.ToStatus(err)
		}
	}
	if req.GetPromote() {
		if ok, err := s.w.store.Promote(t.blockID); err != nil {
			return nil, meta.ToStatus(err)
		} else if ok {
			tier = meta.TierOrder[0]
			if info, found := s.w.store.Get(t.blockID); found {
				tier = info.Tier
			}
		}
	}
	return &apiv1.CacheBlockResponse{AlreadyCached: already, Tier: tier}, nil
}
