package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Replication (alluxio.user.file.replication.durable, ASYNC_THROUGH files
// only, as in Alluxio: MUST_CACHE asks for cache-only data, THROUGH and
// CACHE_THROUGH have their UFS copy before the write returns).
//
// The worker writing the file pushes each block, once it is committed here
// and reported to the master, to the peers the master picks (other nodes
// first), and the block is finished — so the write can be acknowledged —
// only when it has its durable copies. Why the writer pushes: the copies
// exist before the client is told the write succeeded (copying later would
// leave a window in which one kill -9 loses an acknowledged write); the
// client's bytes cross its link once; and the master, which knows live
// workers and their nodes, picks the targets. Copies stay until the file is
// PERSISTED: every holder marks the file unpersisted, so its blocks are
// evicted last, and a lost holder's blocks are pushed again from a
// surviving copy on the master's command (ReplicateCommand).

// minPushRate bounds a push to a silent peer: a block must move at 10 MB/s
// or better, and never gets less than 30 s.
const minPushRate = 10e6

func pushTimeout(n int64) time.Duration {
	return 30*time.Second + time.Duration(float64(n)/minPushRate*float64(time.Second))
}

// ReplicateBlock implements apiv1.BlockWorkerServer.
func (s *blockService) ReplicateBlock(stream grpc.ClientStreamingServer[apiv1.ReplicateBlockRequest, apiv1.ReplicateBlockResponse]) error {
	resp, err := s.w.receiveReplica(stream.Context(), stream)
	if err != nil {
		return meta.ToStatus(err)
	}
	return stream.SendAndClose(resp)
}

func (w *Worker) receiveReplica(ctx context.Context, stream grpc.ClientStreamingServer[apiv1.ReplicateBlockRequest, apiv1.ReplicateBlockResponse]) (*apiv1.ReplicateBlockResponse, error) {
	if !w.work.enter() {
		return nil, errDraining("take replica")
	}
	defer w.work.leave()
	first, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("take replica: receive header: %w", err)
	}
	h := first.GetHeader()
	if h == nil || h.GetBlockId() <= 0 || h.GetLength() <= 0 || h.GetLength() > h.GetBlockSizeBytes() {
		return nil, fmt.Errorf("take replica: %w: the first message must be a header with a block id and 0 < length <= block size", meta.ErrInvalidArgument)
	}
	if err := meta.ValidateBlockSize(h.GetBlockSizeBytes()); err != nil {
		return nil, fmt.Errorf("take replica of block %d: %w", h.GetBlockId(), err)
	}
	if w.ID() == 0 {
		return nil, fmt.Errorf("take replica of block %d: %w: worker not registered with the master yet", h.GetBlockId(), meta.ErrUnavailable)
	}
	id, fileID := h.GetBlockId(), meta.FileIDOf(h.GetBlockId())
	if info, ok := w.store.Get(id); ok && info.Length == h.GetLength() {
		return &apiv1.ReplicateBlockResponse{AlreadyCached: true, Tier: info.Tier}, nil
	}
	bw, err := w.store.CreateBlock(id, h.GetBlockSizeBytes(), h.GetLength())
	if err != nil {
		return nil, fmt.Errorf("take replica of block %d: %w", id, err)
	}
	w.store.MarkUnpersisted(fileID, false)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			_, err = bw.Write(req.GetData())
		}
		if err != nil {
			bw.Abort()
			return nil, fmt.Errorf("take replica of block %d: %w", id, err)
		}
	}
	if bw.Written() != h.GetLength() {
		bw.Abort()
		return nil, fmt.Errorf("take replica of block %d: %w: got %d of %d bytes", id, meta.ErrAborted, bw.Written(), h.GetLength())
	}
	info, err := bw.Commit()
	if err != nil {
		return nil, fmt.Errorf("take replica of block %d: %w", id, err)
	}
	w.metrics.bytesWrittenCache.Add(float64(info.Length))
	if _, err := w.commitBlock(ctx, info, false); err != nil {
		w.store.Remove(id)
		return nil, fmt.Errorf("take replica of block %d: %w", id, err)
	}
	w.store.MarkUnpersisted(fileID, true)
	return &apiv1.ReplicateBlockResponse{Tier: info.Tier}, nil
}

// replicateTo pushes block id to need of the targets (in order, the next
// one replacing a target that fails). With fewer targets than needed (not
// enough live workers) every target must take it; the copies still missing
// are made by the master's re-replication when workers join.
func (w *Worker) replicateTo(ctx context.Context, id int64, need int, targets []*apiv1.BlockLocation) error {
	if len(targets) < need {
		w.log.Info("fewer live workers than replication.durable asks for: keeping fewer copies for now",
			"blockID", id, "wanted", need, "targets", len(targets))
		need = len(targets)
	}
	if need == 0 {
		return nil
	}
	next := make(chan *apiv1.BlockLocation, len(targets))
	for _, t := range targets {
		next <- t
	}
	close(next)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		done int
	)
	for range need {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				err := w.pushBlock(ctx, t.GetWorkerAddress(), id)
				mu.Lock()
				if err == nil {
					done++
				} else {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err == nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if done < need {
		return fmt.Errorf("replicate block %d: %w: %d of %d copies made: %w", id, meta.ErrUnavailable, done, need, errors.Join(errs...))
	}
	return nil
}

// pushBlock copies committed block id to the worker at addr.
func (w *Worker) pushBlock(ctx context.Context, addr string, id int64) error {
	h, err := w.store.OpenBlock(id)
	if err != nil {
		return fmt.Errorf("push block %d to %s: %w", id, addr, err)
	}
	defer h.Close()
	cc, err := w.peerConn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout(h.Length))
	defer cancel()
	st, err := apiv1.NewBlockWorkerClient(cc).ReplicateBlock(ctx)
	if err == nil {
		err = st.Send(&apiv1.ReplicateBlockRequest{Value: &apiv1.ReplicateBlockRequest_Header{Header: &apiv1.ReplicateBlockHeader{
			BlockId: id, BlockSizeBytes: h.BlockSize, Length: h.Length,
		}}})
	}
	buf := chunkPool.Get(DefaultChunkSize)
	defer chunkPool.Put(buf)
	for off := int64(0); err == nil && off < h.Length; {
		n := min(int64(len(*buf)), h.Length-off)
		if _, err = h.File.ReadAt((*buf)[:n], h.Offset+off); err != nil {
			break
		}
		err = st.Send(&apiv1.ReplicateBlockRequest{Value: &apiv1.ReplicateBlockRequest_Data{Data: (*buf)[:n]}})
		off += n
	}
	if err == nil || errors.Is(err, io.EOF) { // EOF: the peer answered early (it has the block)
		_, err = st.CloseAndRecv()
	}
	if err != nil {
		return fmt.Errorf("push block %d to %s: %w", id, addr, meta.FromStatus(err))
	}
	w.metrics.replicaBytesSent.Add(float64(h.Length))
	return nil
}

// peerConn returns a cached connection to another worker.
func (w *Worker) peerConn(addr string) (*grpc.ClientConn, error) {
	w.peersMu.Lock()
	defer w.peersMu.Unlock()
	if cc, ok := w.peers[addr]; ok {
		return cc, nil
	}
	opts := append(clientDialOptions(), security.DialOption(w.cfg.TLS, security.RoleWorker), grpc.WithKeepaliveParams(clientKeepalive))
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to worker %s: %w", addr, err)
	}
	if w.peers == nil {
		w.peers = map[string]*grpc.ClientConn{}
	}
	w.peers[addr] = cc
	return cc, nil
}

func (w *Worker) closePeers() {
	w.peersMu.Lock()
	defer w.peersMu.Unlock()
	for addr, cc := range w.peers {
		cc.Close()
		delete(w.peers, addr)
	}
}

// replicator runs the master's re-replication commands in the background,
// a few at a time, once per block in flight.
type replicator struct {
	w        *Worker
	sem      chan struct{}
	mu       sync.Mutex
	inflight map[int64]bool
	wg       sync.WaitGroup
}

const maxConcurrentPushes = 2

func newReplicator(w *Worker) *replicator {
	return &replicator{w: w, sem: make(chan struct{}, maxConcurrentPushes), inflight: map[int64]bool{}}
}

func (r *replicator) start(cmd *apiv1.ReplicateCommand) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := cmd.GetBlockId()
	if r.inflight[id] || !r.w.work.enter() {
		return
	}
	r.inflight[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.w.work.leave()
		r.sem <- struct{}{}
		defer func() { <-r.sem }()
		if err := r.w.replicateTo(r.w.bg, id, 1, cmd.GetTargets()); err != nil {
			r.w.log.Error(err, "re-replicate block", "blockID", id)
		} else {
			r.w.log.V(1).Info("re-replicated block", "blockID", id)
		}
		r.mu.Lock()
		delete(r.inflight, id)
		r.mu.Unlock()
	}()
}

// wait joins the running pushes (their context, the worker's, is canceled by Close).
func (r *replicator) wait() { r.wg.Wait() }
