package master

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

type worker struct {
	id           int64
	address      string
	webAddress   string
	node         string
	domainSocket string
	dataAddress  string
	tiers        []*apiv1.TierInfo
	start        time.Time
	lastContact  time.Time
	lost         bool
	blocks       map[int64]string // block id → tier
	files        map[int64]int    // file id → blocks of it held here
	toFree       map[int64]struct{}
}

type blockEntry struct {
	length int64
	locs   map[int64]string // worker id → tier
}

// registry is the in-memory worker registry and block location map. As in
// Alluxio it is never journaled: workers rebuild it by registering.
type registry struct {
	mu         sync.Mutex
	workers    map[int64]*worker
	blocks     map[int64]*blockEntry
	fileBlocks map[int64]map[int64]struct{}
	nodeBytes  map[string]int64 // cached bytes per node, kept incrementally
	cidx       *cacheIndex      // cached bytes per (node, path prefix)
	// recheck are blocks that may be below their replication.durable
	// copies, with when a push was last commanded (see replication.go).
	recheck map[int64]time.Time
	added   chan struct{} // closed when a block location is added
}

func newRegistry(cidx *cacheIndex) *registry {
	return &registry{
		cidx:       cidx,
		workers:    map[int64]*worker{},
		blocks:     map[int64]*blockEntry{},
		fileBlocks: map[int64]map[int64]struct{}{},
		nodeBytes:  map[string]int64{},
		recheck:    map[int64]time.Time{},
	}
}

// register records a worker and replaces its block list with the blocks
// accept takes. It returns the worker id (previous one kept if given) and
// the blocks refused, which the worker must remove.
func (r *registry) register(req *apiv1.RegisterWorkerRequest, accept func(*apiv1.WorkerBlock) bool, now time.Time) (int64, []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := req.GetWorkerId()
	if id != 0 {
		if w, ok := r.workers[id]; ok && w.address != req.GetAddress() && !w.lost {
			id = 0 // the id belongs to another live worker
		}
	}
	if id == 0 {
		for _, w := range r.workers {
			if w.address == req.GetAddress() {
				id = w.id
				break
			}
		}
	}
	for id == 0 {
		id = rand.Int64N(1<<53) + 1
		if _, taken := r.workers[id]; taken {
			id = 0
		}
	}
	old := r.workers[id]
	if old != nil {
		r.dropAllLocked(old)
	}
	w := &worker{
		id: id, address: req.GetAddress(), webAddress: req.GetWebAddress(), node: req.GetNode(),
		domainSocket: req.GetDomainSocket(), dataAddress: req.GetDataAddress(), tiers: cloneTiers(req.GetTiers()),
		start: now, lastContact: now,
		blocks: map[int64]string{}, files: map[int64]int{}, toFree: map[int64]struct{}{},
	}
	if old != nil {
		w.start = old.start
		for b := range old.toFree {
			w.toFree[b] = struct{}{}
		}
	}
	r.workers[id] = w
	var rejected []int64
	for _, b := range req.GetBlocks() {
		if accept(b) {
			r.addLocked(w, b)
		} else {
			rejected = append(rejected, b.GetBlockId())
		}
	}
	return id, rejected
}

func cloneTiers(in []*apiv1.TierInfo) []*apiv1.TierInfo {
	out := make([]*apiv1.TierInfo, len(in))
	for i, t := range in {
		out[i] = proto.Clone(t).(*apiv1.TierInfo)
	}
	return out
}

// heartbeat applies a worker's block changes. It returns false when the
// worker is unknown or was declared lost (it must register again), and the
// blocks queued for it to free.
func (r *registry) heartbeat(req *apiv1.HeartbeatRequest, accept func(*apiv1.WorkerBlock) bool, now time.Time) (bool, []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[req.GetWorkerId()]
	if !ok || w.lost {
		return false, nil
	}
	w.lastContact = now
	if len(req.GetTiers()) > 0 {
		w.tiers = cloneTiers(req.GetTiers())
	}
	for _, id := range req.GetRemovedBlockIds() {
		r.removeLocked(w, id)
		delete(w.toFree, id)
	}
	for _, b := range req.GetAddedBlocks() {
		if _, freeing := w.toFree[b.GetBlockId()]; freeing {
			// Cached before a free the worker has not been told of yet
			// (a later load of it commits, which unqueues the free): it
			// stays queued, and unlisted.
			continue
		}
		if accept(b) {
			r.addLocked(w, b)
		} else {
			w.toFree[b.GetBlockId()] = struct{}{}
		}
	}
	free := make([]int64, 0, len(w.toFree))
	for b := range w.toFree {
		free = append(free, b)
	}
	clear(w.toFree)
	sort.Slice(free, func(i, j int) bool { return free[i] < free[j] })
	return true, free
}

// commit records one block a worker cached; false if the worker is unknown.
func (r *registry) commit(workerID int64, b *apiv1.WorkerBlock, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[workerID]
	if !ok || w.lost {
		return false
	}
	w.lastContact = now
	r.addLocked(w, b)
	delete(w.toFree, b.GetBlockId()) // reported again after a free (a load found it still cached): keep it
	if _, queued := r.recheck[b.GetBlockId()]; queued {
		r.recheck[b.GetBlockId()] = time.Time{} // a copy arrived: check again at once
	}
	return true
}

func (r *registry) addLocked(w *worker, b *apiv1.WorkerBlock) {
	id := b.GetBlockId()
	if _, held := w.blocks[id]; held {
		w.blocks[id] = b.GetTier()
		r.blocks[id].locs[w.id] = b.GetTier()
		return
	}
	e := r.blocks[id]
	if e == nil {
		// The length is fixed while any copy exists so that the per-node
		// byte counts subtract exactly what they added.
		e = &blockEntry{length: b.GetLength(), locs: map[int64]string{}}
		r.blocks[id] = e
	}
	e.locs[w.id] = b.GetTier()
	w.blocks[id] = b.GetTier()
	f := meta.FileIDOf(id)
	w.files[f]++
	fb := r.fileBlocks[f]
	if fb == nil {
		fb = map[int64]struct{}{}
		r.fileBlocks[f] = fb
	}
	fb[id] = struct{}{}
	r.nodeBytes[w.node] += e.length
	r.cidx.add(w.node, f, e.length)
	if r.added != nil {
		close(r.added)
		r.added = nil
	}
}

// blockAdded returns a channel closed when the next block location is added.
func (r *registry) blockAdded() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.added == nil {
		r.added = make(chan struct{})
	}
	return r.added
}

// reset forgets every worker and block location: a new leader starts empty
// and workers register again (the registry is never journaled).
func (r *registry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, w := range r.workers {
		r.dropAllLocked(w)
		delete(r.workers, id)
	}
	clear(r.recheck)
}

func (r *registry) removeLocked(w *worker, id int64) {
	if _, held := w.blocks[id]; !held {
		return
	}
	delete(w.blocks, id)
	f := meta.FileIDOf(id)
	if w.files[f]--; w.files[f] <= 0 {
		delete(w.files, f)
	}
	e := r.blocks[id]
	if e == nil {
		return
	}
	delete(e.locs, w.id)
	if r.nodeBytes[w.node] -= e.length; r.nodeBytes[w.node] <= 0 {
		delete(r.nodeBytes, w.node)
	}
	r.cidx.add(w.node, f, -e.length)
	if len(e.locs) == 0 {
		delete(r.blocks, id)
		if fb := r.fileBlocks[f]; fb != nil {
			delete(fb, id)
			if len(fb) == 0 {
				delete(r.fileBlocks, f)
			}
		}
	}
}

func (r *registry) dropAllLocked(w *worker) {
	for id := range w.blocks {
		r.removeLocked(w, id)
	}
}

// freeFiles drops every cached copy of the files' blocks and queues them to
// be freed on their workers. It returns how many blocks were freed.
func (r *registry) freeFiles(fileIDs []int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, f := range fileIDs {
		for id := range r.fileBlocks[f] {
			e := r.blocks[id]
			if e == nil {
				continue
			}
			n++
			for wid := range e.locs {
				if w := r.workers[wid]; w != nil {
					w.toFree[id] = struct{}{}
					r.removeLocked(w, id)
				}
			}
		}
	}
	return n
}

// detectLost marks workers silent for longer than timeout as lost and drops
// their block locations. It returns the ids newly lost and the blocks they
// held that still have a copy elsewhere.
func (r *registry) detectLost(now time.Time, timeout time.Duration) (lost, blocks []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		if !w.lost && now.Sub(w.lastContact) > timeout {
			w.lost = true
			held := make([]int64, 0, len(w.blocks))
			for b := range w.blocks {
				held = append(held, b)
			}
			r.dropAllLocked(w)
			clear(w.toFree)
			lost = append(lost, w.id)
			for _, b := range held {
				if r.blocks[b] != nil {
					blocks = append(blocks, b)
				}
			}
		}
	}
	return lost, blocks
}

// locations returns the cached copies of a block and its reported length.
func (r *registry) locations(blockID int64) ([]*apiv1.BlockLocation, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.blocks[blockID]
	if e == nil {
		return nil, 0
	}
	out := make([]*apiv1.BlockLocation, 0, len(e.locs))
	for wid, tier := range e.locs {
		w := r.workers[wid]
		if w == nil {
			continue
		}
		out = append(out, &apiv1.BlockLocation{WorkerId: w.id, WorkerAddress: w.address, Node: w.node, Tier: tier, DomainSocket: w.domainSocket, DataAddress: w.dataAddress})
	}
	sort.Slice(out, func(i, j int) bool {
		return tierRank(out[i].Tier) < tierRank(out[j].Tier) || (tierRank(out[i].Tier) == tierRank(out[j].Tier) && out[i].WorkerId < out[j].WorkerId)
	})
	return out, e.length
}

func tierRank(t string) int {
	for i, a := range meta.TierOrder {
		if a == t {
			return i
		}
	}
	return len(meta.TierOrder)
}

// fileBlockIDs returns the cached block ids of a file, sorted.
func (r *registry) fileBlockIDs(fileID int64) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int64, 0, len(r.fileBlocks[fileID]))
	for id := range r.fileBlocks[fileID] {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// workerFiles returns the files worker wid holds blocks of (id → count).
func (r *registry) workerFiles(wid int64) map[int64]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[wid]
	if w == nil {
		return nil
	}
	out := make(map[int64]int, len(w.files))
	for f, n := range w.files {
		out[f] = n
	}
	return out
}

// infos describes every worker.
func (r *registry) infos(now time.Time) []*apiv1.WorkerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*apiv1.WorkerInfo, 0, len(r.workers))
	for _, w := range r.workers {
		state := apiv1.WorkerState_WORKER_LIVE
		if w.lost {
			state = apiv1.WorkerState_WORKER_LOST
		}
		out = append(out, &apiv1.WorkerInfo{
			Id: w.id, Address: w.address, WebAddress: w.webAddress, Node: w.node, DomainSocket: w.domainSocket, DataAddress: w.dataAddress,
			Tiers: cloneTiers(w.tiers), LastContactMs: now.Sub(w.lastContact).Milliseconds(), State: state,
			StartTimeMs: w.start.UnixMilli(), BlockCount: int64(len(w.blocks)),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Address < out[j].Address || (out[i].Address == out[j].Address && out[i].Id < out[j].Id)
	})
	return out
}

// counts returns the number of live and lost workers.
func (r *registry) counts() (live, lost int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		if w.lost {
			lost++
		} else {
			live++
		}
	}
	return live, lost
}

// tierTotals sums capacity and used bytes per tier over live workers.
func (r *registry) tierTotals() map[string][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][2]int64{}
	for _, w := range r.workers {
		if w.lost {
			continue
		}
		for _, t := range w.tiers {
			v := out[t.GetAlias()]
			v[0] += t.GetCapacityBytes()
			v[1] += t.GetUsedBytes()
			out[t.GetAlias()] = v
		}
	}
	return out
}

// nodeCachedBytes copies the per-node cached bytes index.
func (r *registry) nodeCachedBytes() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.nodeBytes))
	for n, b := range r.nodeBytes {
		out[n] = b
	}
	return out
}
