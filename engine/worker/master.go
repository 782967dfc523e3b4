package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

const (
	rpcTimeout = 10 * time.Second
	maxBackoff = 10 * time.Second
)

func tiersProto(us []blockstore.TierUsage) []*apiv1.TierInfo {
	out := make([]*apiv1.TierInfo, len(us))
	for i, u := range us {
		out[i] = &apiv1.TierInfo{Alias: u.Alias, CapacityBytes: u.CapacityBytes, UsedBytes: u.UsedBytes}
	}
	return out
}

func blocksProto(bs []blockstore.BlockInfo) []*apiv1.WorkerBlock {
	out := make([]*apiv1.WorkerBlock, len(bs))
	for i, b := range bs {
		out[i] = &apiv1.WorkerBlock{BlockId: b.ID, Length: b.Length, Tier: b.Tier}
	}
	return out
}

// register (re-)registers with the full block list.
func (w *Worker) register(ctx context.Context) error {
	resp, err := w.master.RegisterWorker(ctx, &apiv1.RegisterWorkerRequest{
		Address:      w.addr,
		WebAddress:   w.webAddr,
		Node:         w.cfg.Node,
		DomainSocket: w.cfg.DomainSocket,
		DataAddress:  w.dataAddr,
		Tiers:        tiersProto(w.store.Usage()),
		Blocks:       blocksProto(w.store.Blocks()),
		WorkerId:     w.id.Load(),
		ClusterId:    w.store.ClusterID(),
	})
	if err != nil {
		return fmt.Errorf("register with master %s: %w", w.conn.Target(), meta.FromStatus(err))
	}
	// Settle the cache before the id is set (writes wait for it) and
	// before clients can find this worker through the master.
	wiped, err := w.store.Accept(resp.GetClusterId(), resp.GetFreeBlockIds())
	if err != nil {
		return fmt.Errorf("register with master %s: %w", w.conn.Target(), err)
	}
	if wiped {
		w.log.Info("cache dropped: recorded for another cluster", "clusterID", resp.GetClusterId())
	} else if n := len(resp.GetFreeBlockIds()); n > 0 {
		w.log.Info("master refused cached blocks (file gone or block does not fit it); dropped them", "blocks", n)
	}
	w.tokens.Set(security.KeysFromProto(resp.GetBlockTokenKeys()))
	w.id.Store(resp.GetWorkerId())
	return nil
}

// commitBlock tells the master a block is cached here. wantReplicas asks
// where to push replication.durable copies (the writer of the block).
func (w *Worker) commitBlock(ctx context.Context, b blockstore.BlockInfo, wantReplicas bool) (*apiv1.CommitBlockResponse, error) {
	id := w.id.Load()
	if id == 0 {
		return nil, fmt.Errorf("commit block %d: %w: worker not registered", b.ID, meta.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rpcTimeout)
	defer cancel()
	req := &apiv1.CommitBlockRequest{WorkerId: id, BlockId: b.ID, Length: b.Length, Tier: b.Tier, WantReplicas: wantReplicas}
	resp, err := w.master.CommitBlock(ctx, req)
	if errors.Is(meta.FromStatus(err), meta.ErrFailedPrecondition) {
		// A new leader master does not know this worker yet (the registry
		// is not journaled): register now rather than at the next heartbeat,
		// so a write that spans a fail-over does not fail.
		if rerr := w.register(ctx); rerr != nil {
			return nil, fmt.Errorf("commit block %d: %w", b.ID, rerr)
		}
		req.WorkerId = w.id.Load()
		resp, err = w.master.CommitBlock(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("commit block %d: %w", b.ID, meta.FromStatus(err))
	}
	w.frees.committed(b.ID)
	return resp, nil
}

// freeGuard keeps a heartbeat's free list from removing a block the master
// accepted again after that heartbeat left: the master computed the list
// before the commit arrived (a load re-reporting a block whose free was
// still queued), and applying it would leave the master with a location
// this worker no longer holds and the load with a block that is gone.
type freeGuard struct {
	mu       sync.Mutex
	seq      int64
	at       map[int64]int64 // block id -> seq of its last accepted commit
	inFlight map[int64]int   // block id -> commits of a held copy still on their way
}

// sending returns the seq a heartbeat carries: commits with a later seq
// are newer than its free list.
func (g *freeGuard) sending() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	return g.seq
}

func (g *freeGuard) committed(id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	if g.at == nil {
		g.at = map[int64]int64{}
	}
	g.at[id] = g.seq
}

// holding runs present, which says whether the block is still cached
// here, without a heartbeat's free list being applied meanwhile; when it
// is, the block is kept from every free list until done is called (after
// its commit, whose success records it as committed, or failure). A load that finds the block
// cached and reports it again must not lose it to a free applied between
// its look and its commit.
func (g *freeGuard) holding(id int64, present func() bool) (ok bool, done func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !present() {
		return false, nil
	}
	if g.inFlight == nil {
		g.inFlight = map[int64]int{}
	}
	g.inFlight[id]++
	return true, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.inFlight[id]--; g.inFlight[id] == 0 {
			delete(g.inFlight, id)
		}
	}
}

// apply removes the blocks of the free list of the heartbeat sent at seq
// that no commit since (or on its way) keeps, and forgets the commits
// older than it (no later heartbeat can predate them). It removes under
// the guard's lock, so holding sees a block either before or after.
func (g *freeGuard) apply(ids []int64, sent int64, remove func(int64)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		if g.at[id] <= sent && g.inFlight[id] == 0 {
			remove(id)
		}
	}
	for id, s := range g.at {
		if s < sent {
			delete(g.at, id)
		}
	}
}

// heartbeatLoop heartbeats every interval; while the master is unreachable
// it retries with exponential backoff and the worker keeps serving.
func (w *Worker) heartbeatLoop(ctx context.Context, registered bool) {
	hb := &heartbeater{w: w, registered: registered, added: map[int64]blockstore.BlockInfo{}, removed: map[int64]bool{}}
	connected := registered
	delay := w.cfg.HeartbeatInterval
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err := hb.beat(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if connected {
				w.log.Error(err, "master unreachable; serving cached data and retrying", "masters", w.cfg.MasterAddresses)
				connected = false
			}
			delay = min(delay*2, maxBackoff)
		default:
			if !connected {
				w.log.Info("connected to master", "master", w.conn.Target(), "workerID", w.ID())
				connected = true
			}
			delay = w.cfg.HeartbeatInterval
		}
		t.Reset(delay)
	}
}

// heartbeater keeps block events not yet acknowledged by the master.
type heartbeater struct {
	w          *Worker
	registered bool
	added      map[int64]blockstore.BlockInfo
	removed    map[int64]bool
}

func (h *heartbeater) beat(ctx context.Context) error {
	w := h.w
	if !h.registered {
		if err := w.register(ctx); err != nil {
			return err
		}
		h.registered = true
		clear(h.added)
		clear(h.removed)
		return nil
	}
	added, removed := w.store.DrainEvents()
	for _, b := range added {
		h.added[b.ID] = b
		delete(h.removed, b.ID)
	}
	for _, id := range removed {
		delete(h.added, id)
		h.removed[id] = true
	}
	req := &apiv1.HeartbeatRequest{WorkerId: w.ID(), Tiers: tiersProto(w.store.Usage())}
	for _, b := range h.added {
		req.AddedBlocks = append(req.AddedBlocks, &apiv1.WorkerBlock{BlockId: b.ID, Length: b.Length, Tier: b.Tier})
	}
	for id := range h.removed {
		req.RemovedBlockIds = append(req.RemovedBlockIds, id)
	}
	sent, seq := time.Now(), w.frees.sending()
	resp, err := w.master.Heartbeat(ctx, req)
	if err != nil {
		return fmt.Errorf("heartbeat to master %s: %w", w.conn.Target(), meta.FromStatus(err))
	}
	w.tokens.Set(security.KeysFromProto(resp.GetBlockTokenKeys()))
	clear(h.added)
	clear(h.removed)
	if resp.GetRegister() {
		w.log.Info("master asked to re-register", "workerID", w.ID())
		h.registered = false
		return h.beat(ctx)
	}
	w.frees.apply(resp.GetFreeBlockIds(), seq, func(id int64) { w.store.Remove(id) })
	w.store.SetPinned(resp.GetPinnedFileIds())
	w.store.SetUnpersisted(resp.GetUnpersistedFileIds(), sent)
	for _, cmd := range resp.GetPersist() {
		w.persister.start(cmd)
	}
	for _, cmd := range resp.GetReplicate() {
		w.repl.start(cmd)
	}
	return nil
}
