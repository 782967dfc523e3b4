package master

import (
	"context"
	"sort"

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

func (s *metaServer) GetMasterInfo(_ context.Context, req *apiv1.GetMasterInfoRequest) (*apiv1.GetMasterInfoResponse, error) {
	m := s.m
	live, lost := m.reg.counts()
	serving := m.lead.serving.Load()
	if req.GetRequireLeader() && !serving {
		return nil, m.notLeader("get master info")
	}
	_, leaderID := m.journal.Leader()
	resp := &apiv1.GetMasterInfoResponse{
		IsLeader: serving, Version: Version, StartTimeMs: m.started.UnixMilli(), WebAddress: m.WebAddr(),
		InodeCount: m.inodeCount(), LiveWorkers: int32(live), LostWorkers: int32(lost),
		JournalDir: m.journal.Dir(), JournalLastIndex: int64(m.journal.LastIndex()),
		JournalId: m.journal.ID(), LeaderJournalId: leaderID, JournalAppliedIndex: int64(m.journal.AppliedIndex()),
		JournalTerm: int64(m.journal.Term()),
	}
	addrs, err := m.masterAddresses()
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	ids := make([]string, 0, len(addrs))
	for id := range addrs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		resp.MasterAddresses = append(resp.MasterAddresses, addrs[id].GetRpcAddress())
	}
	if len(resp.MasterAddresses) == 0 {
		resp.MasterAddresses = []string{m.AdvertisedAddr()}
	}
	switch {
	case serving:
		resp.LeaderAddress = m.AdvertisedAddr()
	case leaderID != "" && leaderID != m.journal.ID():
		resp.LeaderAddress = addrs[leaderID].GetRpcAddress()
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
