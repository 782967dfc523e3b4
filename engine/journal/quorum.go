package journal

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/alcove-io/alcove/engine/meta"
)

// Member is one server of the journal group as the configuration lists it.
type Member struct {
	ID      string
	Address string // raft address
	Voter   bool
	Leader  bool
	// Available: the leader is hearing from this member (its own entry is
	// always available). Only the leader knows; a standby reports all true.
	Available bool
}

// peerHealth follows raft's heartbeat observations on the leader.
type peerHealth struct {
	mu     sync.Mutex
	failed map[raft.ServerID]bool
}

// watchPeers registers an observer of heartbeat failures and recoveries;
// its goroutine (in wg) ends when stop closes.
func watchPeers(r *raft.Raft, wg *sync.WaitGroup, stop <-chan struct{}) *peerHealth {
	h := &peerHealth{failed: map[raft.ServerID]bool{}}
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.DeregisterObserver(obs)
		for {
			select {
			case <-stop:
				return
			case o := <-ch:
				h.mu.Lock()
				switch d := o.Data.(type) {
				case raft.FailedHeartbeatObservation:
					h.failed[d.PeerID] = true
				case raft.ResumedHeartbeatObservation:
					delete(h.failed, d.PeerID)
				case raft.LeaderObservation:
					clear(h.failed) // a new leader starts with fresh contacts
				}
				h.mu.Unlock()
			}
		}
	}()
	return h
}

func (h *peerHealth) available(id raft.ServerID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.failed[id]
}

// Members returns the group's configuration.
func (j *Journal) Members(ctx context.Context) ([]Member, error) {
	f := j.raft.GetConfiguration()
	if err := wait(ctx, f); err != nil {
		return nil, fmt.Errorf("read journal configuration: %w", mapRaftErr(err))
	}
	_, leader := j.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{
			ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter,
			Leader: s.ID == leader, Available: s.ID == leader || j.peers.available(s.ID),
		})
	}
	return out, nil
}

// configChangeTimeout bounds a membership change on the leader.
const configChangeTimeout = 30 * time.Second

// AddVoter adds a voting member (leader only). The new member starts empty
// (or with its old state) and catches up from the leader.
func (j *Journal) AddVoter(ctx context.Context, id, address string) error {
	if id == "" || address == "" {
		return fmt.Errorf("%w: add journal member: id and address are required", meta.ErrInvalidArgument)
	}
	if err := wait(ctx, j.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(address), 0, configChangeTimeout)); err != nil {
		return fmt.Errorf("add journal member %s (%s): %w", id, address, mapRaftErr(err))
	}
	return nil
}

// RemoveMember removes a member (leader only). Removing the leader itself
// makes it step down once the change commits.
func (j *Journal) RemoveMember(ctx context.Context, id string) error {
	if err := wait(ctx, j.raft.RemoveServer(raft.ServerID(id), 0, configChangeTimeout)); err != nil {
		return fmt.Errorf("remove journal member %s: %w", id, mapRaftErr(err))
	}
	return nil
}

// TransferLeadership hands leadership to member id (leader only).
func (j *Journal) TransferLeadership(ctx context.Context, id, address string) error {
	if err := wait(ctx, j.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(address))); err != nil {
		return fmt.Errorf("transfer journal leadership to %s: %w", id, mapRaftErr(err))
	}
	return nil
}
