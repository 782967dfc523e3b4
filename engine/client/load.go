package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// LoadAhead is how many blocks past a block that ReadAt loaded from the UFS
// are loaded into the local worker in the background.
const LoadAhead = 2

// loader turns ReadAt misses into whole-block loads on the local worker.
// Concurrent, out-of-order requests (FUSE readahead) of an uncached block
// would otherwise each open their own UFS range read, none of which caches
// the block in one pass; loaded blocks are then read through the domain
// socket, and a file read once is local for the next open. Guarded by the
// Reader's mu.
type loader struct {
	loading map[int64]*loadCall // by block index
	off     bool                // no local worker, or it cannot cache: stream instead
}

type loadCall struct {
	done chan struct{}
	err  error
}

// localWorker is the live worker on this client's node that has a domain
// socket, or nil.
func (c *Client) localWorker(ctx context.Context) *apiv1.WorkerInfo {
	if c.cfg.DisableShortCircuit {
		return nil
	}
	ws, err := c.liveWorkers(ctx)
	if err != nil {
		return nil
	}
	for _, w := range ws {
		if w.GetNode() == c.cfg.Node && w.GetDomainSocket() != "" && !c.isSlow(w.GetAddress()) {
			return w
		}
	}
	return nil
}

// loadLocal has the local worker cache block idx from the UFS (joining a
// load already running there) and opens it through the domain socket; it
// also starts loading the next LoadAhead blocks. ok is false when this does
// not apply (the block is cached somewhere, the file is not persisted, no
// local worker, NO_CACHE) or failed: the caller streams the block instead.
func (r *Reader) loadLocal(idx int64) (src *source, ok bool) {
	info := r.Info()
	bi, _ := blockInfo(info, idx)
	if r.readType == apiv1.ReadType_NO_CACHE || len(bi.GetLocations()) > 0 ||
		info.GetPersistenceState() != apiv1.PersistenceState_PERSISTED {
		return nil, false
	}
	r.mu.Lock()
	off := r.load.off
	r.mu.Unlock()
	if off {
		return nil, false
	}
	w := r.c.localWorker(r.ctx)
	if w == nil {
		r.disableLoads()
		return nil, false
	}
	err := r.loadBlock(w, idx)
	for next := idx + 1; next <= idx+LoadAhead && next < meta.BlockCount(info.GetLength(), info.GetBlockSizeBytes()); next++ {
		go r.loadBlock(w, next)
	}
	if err != nil {
		if errors.Is(err, meta.ErrNoSpace) {
			r.disableLoads()
		}
		klog.FromContext(r.ctx).V(1).Info("Load into the local worker failed; streaming the block", "path", info.GetPath(), "block", idx, "err", err)
		return nil, false
	}
	sc, err := r.c.shortCircuit(r.ctx, w.GetDomainSocket())
	if err != nil {
		return nil, false
	}
	octx, cancel := r.c.withDataTimeout(r.ctx)
	b, err := sc.Open(octx, bi.GetBlockId(), info.GetBlockSizeBytes(), r.readType == apiv1.ReadType_CACHE_PROMOTE, info.GetBlockToken())
	cancel()
	if err != nil {
		if !errors.Is(err, meta.ErrNotFound) {
			r.c.dropShortCircuit(w.GetDomainSocket())
		}
		return nil, false // evicted already: stream it
	}
	return &source{index: idx, blockLen: b.Length, end: b.Length, kind: kindUFS, local: b}, true
}

func (r *Reader) disableLoads() {
	r.mu.Lock()
	r.load.off = true
	r.mu.Unlock()
}

// loadBlock runs one CacheBlock of block idx on worker w, shared by every
// caller asking for the same block meanwhile.
func (r *Reader) loadBlock(w *apiv1.WorkerInfo, idx int64) error {
	r.mu.Lock()
	if r.load.loading == nil {
		r.load.loading = map[int64]*loadCall{}
	}
	if call, ok := r.load.loading[idx]; ok {
		r.mu.Unlock()
		select {
		case <-call.done:
			return call.err
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	if _, leased := r.locals[idx]; leased {
		r.mu.Unlock()
		return nil
	}
	call := &loadCall{done: make(chan struct{})}
	r.load.loading[idx] = call
	r.mu.Unlock()

	call.err = r.cacheBlock(w, idx)
	close(call.done)
	r.mu.Lock()
	// A failed load may be retried by a later read; a finished one is
	// remembered so read-ahead does not ask the worker again.
	if call.err != nil {
		delete(r.load.loading, idx)
	}
	r.mu.Unlock()
	return call.err
}

func (r *Reader) cacheBlock(w *apiv1.WorkerInfo, idx int64) error {
	info := r.Info()
	if meta.IsHole(info.GetHoles(), idx) {
		return nil // zeros: nothing to load
	}
	bi, blen := blockInfo(info, idx)
	wc, err := r.c.workerConn(w.GetAddress())
	if err != nil {
		return err
	}
	// The worker reads the whole block from the UFS: allow it a slow UFS
	// (1 MB/s) on top of the data timeout; a silent worker is left then.
	ctx, cancel := context.WithTimeout(r.ctx, r.c.cfg.DataTimeout+time.Duration(blen)*time.Microsecond)
	defer cancel()
	_, err = wc.CacheBlock(ctx, CacheBlockRequest(info, idx))
	if ctx.Err() != nil && r.ctx.Err() == nil {
		r.c.markSlow(w.GetAddress())
	}
	if err != nil {
		return fmt.Errorf("load block %d of %s into worker %s: %w", bi.GetBlockId(), info.GetPath(), w.GetAddress(), meta.FromStatus(err))
	}
	return nil
}
