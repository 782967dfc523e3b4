package master

import (
	"context"
	"fmt"
	"sort"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
)

// The master directory: raft knows members by journal id and raft address
// only, so each new leader journals its client RPC address under its id
// (before it serves). A standby looks up the leader's id there to name the
// leader's RPC address in its NotLeader answers.

func applySetMasterAddress(tx *bbolt.Tx, s *apiv1.SetMasterAddressEntry) (any, error) {
	if s.GetJournalId() == "" || s.GetRpcAddress() == "" {
		return nil, fmt.Errorf("%w: master address entry without id or address", meta.ErrInvalidArgument)
	}
	data, err := proto.Marshal(s)
	if err != nil {
		return nil, err
	}
	return applyResult{}, tx.Bucket(bMasters).Put([]byte(s.GetJournalId()), data)
}

// masterAddress returns the addresses recorded for journal member id (nil
// when it never led).
func (m *Master) masterAddress(id string) (*apiv1.SetMasterAddressEntry, error) {
	var out *apiv1.SetMasterAddressEntry
	err := m.store.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bMasters).Get([]byte(id))
		if v == nil {
			return nil
		}
		out = &apiv1.SetMasterAddressEntry{}
		return proto.Unmarshal(v, out)
	})
	return out, err
}

// masterAddresses returns every recorded member's addresses by id.
func (m *Master) masterAddresses() (map[string]*apiv1.SetMasterAddressEntry, error) {
	out := map[string]*apiv1.SetMasterAddressEntry{}
	err := m.store.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bMasters).ForEach(func(k, v []byte) error {
			e := &apiv1.SetMasterAddressEntry{}
			if err := proto.Unmarshal(v, e); err != nil {
				return err
			}
			out[string(k)] = e
			return nil
		})
	})
	return out, err
}

// recordAddress journals this master's addresses unless recorded already.
func (m *Master) recordAddress(ctx context.Context) error {
	want := &apiv1.SetMasterAddressEntry{JournalId: m.journal.ID(), RpcAddress: m.AdvertisedAddr(), WebAddress: m.WebAddr()}
	have, err := m.masterAddress(want.JournalId)
	if err != nil {
		return fmt.Errorf("read master directory: %w", err)
	}
	if proto.Equal(have, want) {
		return nil
	}
	if _, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetMasterAddress{SetMasterAddress: want}}); err != nil {
		return fmt.Errorf("record master address: %w", err)
	}
	return nil
}

// GetQuorumInfo is answered by the leader (the only member that knows which
// members answer it); with no leader elected any member answers, vouching
// only for itself.
func (s *metaServer) GetQuorumInfo(ctx context.Context, _ *apiv1.GetQuorumInfoRequest) (*apiv1.GetQuorumInfoResponse, error) {
	m := s.m
	_, leader := m.journal.Leader()
	serving := m.lead.serving.Load()
	if !serving && leader != "" {
		return nil, m.notLeader("get quorum info")
	}
	members, err := m.journal.Members(ctx)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	addrs, err := m.masterAddresses()
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	resp := &apiv1.GetQuorumInfoResponse{LeaderId: leader}
	for _, mb := range members {
		resp.Members = append(resp.Members, &apiv1.QuorumMember{
			Id: mb.ID, Address: mb.Address, RpcAddress: addrs[mb.ID].GetRpcAddress(),
			Leader: mb.Leader, Voter: mb.Voter, Available: mb.Available && (serving || mb.ID == m.journal.ID()),
		})
	}
	sort.Slice(resp.Members, func(i, j int) bool { return resp.Members[i].Id < resp.Members[j].Id })
	return resp, nil
}

// memberID finds a member by id or raft address.
func (m *Master) memberID(ctx context.Context, id, address string) (journal.Member, error) {
	members, err := m.journal.Members(ctx)
	if err != nil {
		return journal.Member{}, err
	}
	for _, mb := range members {
		if (id != "" && mb.ID == id) || (id == "" && address != "" && mb.Address == address) {
			return mb, nil
		}
	}
	return journal.Member{}, fmt.Errorf("journal member (id %q, address %q): %w", id, address, meta.ErrNotFound)
}

func (s *metaServer) AddQuorumMember(ctx context.Context, req *apiv1.AddQuorumMemberRequest) (*apiv1.AddQuorumMemberResponse, error) {
	id := req.GetId()
	if id == "" {
		id = req.GetAddress()
	}
	if err := s.m.journal.AddVoter(ctx, id, req.GetAddress()); err != nil {
		return nil, meta.ToStatus(err)
	}
	s.m.logger.Info("Journal member added", "id", id, "address", req.GetAddress())
	return &apiv1.AddQuorumMemberResponse{}, nil
}

func (s *metaServer) RemoveQuorumMember(ctx context.Context, req *apiv1.RemoveQuorumMemberRequest) (*apiv1.RemoveQuorumMemberResponse, error) {
	mb, err := s.m.memberID(ctx, req.GetId(), req.GetAddress())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	if err := s.m.journal.RemoveMember(ctx, mb.ID); err != nil {
		return nil, meta.ToStatus(err)
	}
	s.m.logger.Info("Journal member removed", "id", mb.ID, "address", mb.Address)
	return &apiv1.RemoveQuorumMemberResponse{}, nil
}

func (s *metaServer) TransferLeadership(ctx context.Context, req *apiv1.TransferLeadershipRequest) (*apiv1.TransferLeadershipResponse, error) {
	mb, err := s.m.memberID(ctx, req.GetId(), req.GetAddress())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	if mb.Leader {
		return &apiv1.TransferLeadershipResponse{LeaderId: mb.ID}, nil
	}
	if err := s.m.journal.TransferLeadership(ctx, mb.ID, mb.Address); err != nil {
		return nil, meta.ToStatus(err)
	}
	s.m.logger.Info("Journal leadership transferred", "to", mb.ID)
	return &apiv1.TransferLeadershipResponse{LeaderId: mb.ID}, nil
}
