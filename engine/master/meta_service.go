package master

import (
	"context"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// metaServer is the MetaMaster service.
type metaServer struct {
	apiv1.UnimplementedMetaMasterServer
	m *Master
}

var _ apiv1.MetaMasterServer = (*metaServer)(nil)

func (s *metaServer) GetMasterInfo(context.Context, *apiv1.GetMasterInfoRequest) (*apiv1.GetMasterInfoResponse, error) {
	m := s.m
	live, lost := m.reg.counts()
	leader := m.journal.IsLeader()
	resp := &apiv1.GetMasterInfoResponse{
		IsLeader: leader, Version: Version, StartTimeMs: m.started.UnixMilli(), WebAddress: m.WebAddr(),
		InodeCount: m.inodeCount(), LiveWorkers: int32(live), LostWorkers: int32(lost),
		MasterAddresses: []string{m.Addr()}, JournalDir: m.journal.Dir(), JournalLastIndex: int64(m.journal.LastIndex()),
	}
	if leader {
		resp.LeaderAddress = m.Addr()
	}
	return resp, nil
}

func (s *metaServer) GetWorkers(context.Context, *apiv1.GetWorkersRequest) (*apiv1.GetWorkersResponse, error) {
	return &apiv1.GetWorkersResponse{Workers: s.m.reg.infos(s.m.now())}, nil
}

func (s *metaServer) Checkpoint(ctx context.Context, _ *apiv1.CheckpointRequest) (*apiv1.CheckpointResponse, error) {
	idx, err := s.m.journal.Checkpoint(ctx)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CheckpointResponse{Index: int64(idx)}, nil
}

// inodeCount reads the number of inodes (0 if the store is unreadable).
func (m *Master) inodeCount() int64 {
	var n int64
	_ = m.store.View(func(tx *bbolt.Tx) error {
		n = counter(tx, kInodeCount)
		return nil
	})
	return n
}
