package master

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// maxPersistPerHeartbeat bounds the persist commands in one reply.
const maxPersistPerHeartbeat = 16

// blockServer is the BlockMaster service that workers call.
type blockServer struct {
	apiv1.UnimplementedBlockMasterServer
	m *Master
}

var _ apiv1.BlockMasterServer = (*blockServer)(nil)

func blockIDs(bs []*apiv1.WorkerBlock) []int64 {
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.GetBlockId()
	}
	return out
}

func (s *blockServer) RegisterWorker(ctx context.Context, req *apiv1.RegisterWorkerRequest) (*apiv1.RegisterWorkerResponse, error) {
	if req.GetAddress() == "" {
		return nil, meta.ToStatus(fmt.Errorf("%w: register worker: empty address", meta.ErrInvalidArgument))
	}
	cluster, err := s.m.clusterID()
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	files, err := s.m.filesOf(blockIDs(req.GetBlocks()))
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	accept := acceptFunc(files)
	if req.GetClusterId() != cluster {
		// Another namespace's cache: the worker drops all of it.
		accept = func(*apiv1.WorkerBlock) bool { return false }
	}
	s.m.resolvePaths(blockIDs(req.GetBlocks()))
	id, rejected := s.m.reg.register(req, accept, s.m.now())
	klog.FromContext(ctx).Info("Worker registered", "workerID", id, "address", req.GetAddress(), "node", req.GetNode(),
		"blocks", len(req.GetBlocks()), "refused", len(rejected), "sameCluster", req.GetClusterId() == cluster)
	resp := &apiv1.RegisterWorkerResponse{WorkerId: id, ClusterId: cluster, BlockTokenKeys: security.KeysToProto(s.m.tokens.Keys())}
	if req.GetClusterId() == cluster {
		resp.FreeBlockIds = rejected
	}
	return resp, nil
}

func (s *blockServer) Heartbeat(ctx context.Context, req *apiv1.HeartbeatRequest) (*apiv1.HeartbeatResponse, error) {
	m := s.m
	added, err := m.filesOf(blockIDs(req.GetAddedBlocks()))
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	m.resolvePaths(blockIDs(req.GetAddedBlocks()))
	ok, free := m.reg.heartbeat(req, acceptFunc(added), m.now())
	if !ok {
		return &apiv1.HeartbeatResponse{Register: true}, nil
	}
	resp := &apiv1.HeartbeatResponse{FreeBlockIds: free, BlockTokenKeys: security.KeysToProto(s.m.tokens.Keys())}
	files := m.reg.workerFiles(req.GetWorkerId())
	err = m.store.View(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bPinned).ForEach(func(k, _ []byte) error {
			resp.PinnedFileIds = append(resp.PinnedFileIds, int64(journal.U64(k)))
			return nil
		}); err != nil {
			return err
		}
		unp := tx.Bucket(bUnpersisted)
		var all []*apiv1.MountPointInfo
		for f, held := range files {
			v := unp.Get(idKey(f))
			if v == nil {
				continue
			}
			resp.UnpersistedFileIds = append(resp.UnpersistedFileIds, f)
			if len(v) != 1 || v[0] != byte(apiv1.PersistenceState_TO_BE_PERSISTED) || len(resp.Persist) >= maxPersistPerHeartbeat {
				continue
			}
			ino, err := getInode(tx, f)
			if err != nil || ino == nil || !ino.Completed || int64(held) < meta.BlockCount(ino.Length, ino.BlockSizeBytes)-meta.HoleBlocks(ino.Holes) {
				continue
			}
			p, err := pathOf(tx, ino)
			if err != nil {
				continue
			}
			if all == nil {
				if all, err = mounts(tx); err != nil {
					return err
				}
			}
			mnt := mountOf(all, p)
			if mnt == nil || !m.persist.claim(f, req.GetWorkerId(), m.now()) {
				continue
			}
			resp.Persist = append(resp.Persist, &apiv1.PersistCommand{
				FileId: f, Path: p, UfsPath: ufsPath(mnt, p), Length: ino.Length,
				BlockSizeBytes: ino.BlockSizeBytes, Mode: ino.Mode, UfsTempPath: persistTempURI(mnt, f), Holes: ino.Holes, MountId: mnt.GetMountId(),
			})
		}
		return nil
	})
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	sort.Slice(resp.UnpersistedFileIds, func(i, j int) bool { return resp.UnpersistedFileIds[i] < resp.UnpersistedFileIds[j] })
	resp.Replicate = m.replicateCommands(req.GetWorkerId(), m.now())
	for _, c := range resp.Persist {
		klog.FromContext(ctx).V(2).Info("Persist command issued", "workerID", req.GetWorkerId(), "path", c.Path, "fileID", c.FileId)
	}
	return resp, nil
}

func (s *blockServer) CommitBlock(ctx context.Context, req *apiv1.CommitBlockRequest) (*apiv1.CommitBlockResponse, error) {
	if req.GetBlockId() <= 0 || req.GetLength() < 0 {
		return nil, meta.ToStatus(fmt.Errorf("%w: commit block %d of length %d", meta.ErrInvalidArgument, req.GetBlockId(), req.GetLength()))
	}
	files, err := s.m.filesOf([]int64{req.GetBlockId()})
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	f := files[meta.FileIDOf(req.GetBlockId())]
	if !f.exists {
		return nil, meta.ToStatus(fmt.Errorf("commit block %d: file %d: %w", req.GetBlockId(), meta.FileIDOf(req.GetBlockId()), meta.ErrNotFound))
	}
	b := &apiv1.WorkerBlock{BlockId: req.GetBlockId(), Length: req.GetLength(), Tier: req.GetTier()}
	if !acceptBlock(files, b) {
		return nil, meta.ToStatus(fmt.Errorf("%w: commit block %d of length %d: it does not fit file %d (length %d, block size %d, complete %v)",
			meta.ErrInvalidArgument, req.GetBlockId(), req.GetLength(), meta.FileIDOf(req.GetBlockId()), f.length, f.blockSize, f.completed))
	}
	s.m.resolvePaths([]int64{req.GetBlockId()})
	if !s.m.reg.commit(req.GetWorkerId(), b, s.m.now()) {
		return nil, meta.ToStatus(fmt.Errorf("%w: commit block %d: worker %d is not registered (register again)", meta.ErrFailedPrecondition, req.GetBlockId(), req.GetWorkerId()))
	}
	resp := &apiv1.CommitBlockResponse{}
	if req.GetWantReplicas() && f.async && f.durable > 1 {
		need, targets := s.m.reg.replicaTargets(req.GetBlockId(), int(f.durable))
		resp.ReplicasNeeded, resp.ReplicaTargets = int32(max(need, 0)), targets
	}
	return resp, nil
}

func (s *blockServer) PersistDone(ctx context.Context, req *apiv1.PersistDoneRequest) (*apiv1.PersistDoneResponse, error) {
	m := s.m
	logger := klog.FromContext(ctx).WithValues("workerID", req.GetWorkerId(), "fileID", req.GetFileId())
	if req.GetError() != "" {
		wait := m.persist.fail(req.GetFileId(), m.now())
		logger.Info("Persist failed; will retry", "error", req.GetError(), "after", wait.Round(time.Millisecond))
		return &apiv1.PersistDoneResponse{}, nil
	}
	// Exactly once: a report retried after its commit (the temporary object
	// moved into place) gets the first answer instead of a missing object.
	commit := func(ctx context.Context) (struct{}, error) {
		return struct{}{}, m.commitPersist(ctx, req.GetFileId(), req.GetUfsTempPath())
	}
	if _, err := exactlyOnce(ctx, m, commit, replayNone); err != nil {
		m.persist.fail(req.GetFileId(), m.now()) // retried, after a backoff
		return nil, meta.ToStatus(fmt.Errorf("persist done for file %d: %w", req.GetFileId(), err))
	}
	m.persist.done(req.GetFileId())
	return &apiv1.PersistDoneResponse{}, nil
}

// GetMountConfig hands a worker a mount's configuration with its
// properties in clear (UFS credentials): workers build their UFS clients
// from what the master holds, never from what a client sends.
func (s *blockServer) GetMountConfig(ctx context.Context, req *apiv1.GetMountConfigRequest) (*apiv1.GetMountConfigResponse, error) {
	mnt, err := s.m.mountByID(req.GetMountId())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	klog.FromContext(ctx).V(2).Info("Mount configuration handed out", "mountID", mnt.GetMountId(), "path", mnt.GetAlcovePath())
	return &apiv1.GetMountConfigResponse{Mount: mnt}, nil
}
