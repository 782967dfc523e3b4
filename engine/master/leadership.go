package master

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// leadership is the master's serving state. Only the leadership loop
// changes it; RPC handlers read the atomics.
type leadership struct {
	serving atomic.Bool
	since   atomic.Int64                  // unix nanoseconds when serving began
	epoch   atomic.Pointer[string]        // names this term's node cache index
	ended   atomic.Pointer[chan struct{}] // closed when this term's serving ends
	first   chan struct{}                 // closed when the master first serves
	failed  chan error                    // failures to take up leadership before the first serve

	// Owned by the leadership loop.
	term   uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// becomeLeaderTimeout bounds one attempt to take up leadership.
const becomeLeaderTimeout = 30 * time.Second

// leadershipLoop follows the journal's leadership until ctx ends: a member
// that becomes leader catches up and starts serving; one that loses
// leadership (or whose term changed underneath) stops serving.
func (m *Master) leadershipLoop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if m.reconcileLeadership(ctx) {
			retry.Reset(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			m.stepDown("master stopping")
			return
		case <-m.journal.LeadershipChanges():
		case <-retry.C:
		}
	}
}

// reconcileLeadership aligns serving with the journal's state; it returns
// true when taking up leadership failed and should be retried.
func (m *Master) reconcileLeadership(ctx context.Context) bool {
	leader, term := m.journal.IsLeader(), m.journal.Term()
	if m.lead.serving.Load() && (!leader || term != m.lead.term) {
		m.stepDown("lost journal leadership")
	}
	if !leader || m.lead.serving.Load() {
		return false
	}
	if err := m.becomeLeader(ctx, term); err != nil {
		select {
		case <-m.lead.first:
		default:
			select {
			case m.lead.failed <- err: // a lone master's Start reports it
			default:
			}
		}
		if ctx.Err() == nil && m.journal.IsLeader() {
			m.logger.Error(err, "Take up leadership; retrying")
			return true
		}
		m.logger.Info("Leadership ended while taking it up", "reason", err.Error())
	}
	return false
}

// becomeLeader applies every committed entry (raft Barrier), records this
// master's RPC address for the standbys, mounts the root of a new namespace,
// mints the cluster id and the block token secret of a new namespace, counts
// subdirectories of a store written before they were counted, and starts serving with an empty worker registry (workers register again).
func (m *Master) becomeLeader(ctx context.Context, term uint64) error {
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, becomeLeaderTimeout)
	defer cancel()
	if err := m.journal.Barrier(bctx); err != nil {
		return err
	}
	if err := m.recordAddress(bctx); err != nil {
		return err
	}
	if err := m.mountRoot(bctx); err != nil {
		return err
	}
	if err := m.ensureClusterID(bctx); err != nil {
		return err
	}
	if err := m.ensureTokenSecret(bctx); err != nil {
		return err
	}
	if err := m.countChildDirs(bctx); err != nil {
		return err
	}
	if err := m.refreshMounts(); err != nil {
		return err
	}
	m.reg.reset()
	m.persist.reset()
	epoch := newEpoch()
	m.lead.epoch.Store(&epoch)
	ended := make(chan struct{})
	m.lead.ended.Store(&ended)
	lctx, lcancel := context.WithCancel(ctx)
	m.lead.cancel, m.lead.term = lcancel, term
	m.lead.wg.Add(2)
	go func() {
		defer m.lead.wg.Done()
		m.lostWorkerLoop(lctx)
	}()
	go func() {
		defer m.lead.wg.Done()
		m.ttlLoop(lctx)
	}()
	m.lead.since.Store(time.Now().UnixNano())
	m.lead.serving.Store(true)
	select {
	case <-m.lead.first:
	default:
		close(m.lead.first)
	}
	m.logger.Info("Leading: serving", "journalID", m.journal.ID(), "term", term, "appliedIndex", m.journal.AppliedIndex(),
		"catchUp", time.Since(start).Round(time.Millisecond))
	return nil
}

// stepDown stops serving: leader-only loops end, open watch streams end,
// and the worker registry is dropped.
func (m *Master) stepDown(reason string) {
	if !m.lead.serving.Load() {
		return
	}
	m.lead.serving.Store(false)
	if p := m.lead.ended.Load(); p != nil {
		close(*p)
	}
	m.lead.cancel()
	m.lead.wg.Wait()
	m.reg.reset()
	m.logger.Info("Stopped leading", "reason", reason, "term", m.lead.term)
}

// Serving reports whether this master leads and serves.
func (m *Master) Serving() bool { return m.lead.serving.Load() }

// inRegistrationGrace reports whether this leader is still within the time
// workers are given to register after it took over; until then a block
// missing from the registry is not yet lost.
func (m *Master) inRegistrationGrace() (bool, time.Time) {
	end := time.Unix(0, m.lead.since.Load()).Add(m.cfg.WorkerTimeout)
	return time.Now().Before(end), end
}

func (m *Master) lostWorkerLoop(ctx context.Context) {
	t := time.NewTicker(max(m.cfg.WorkerTimeout/4, 20*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			lost, blocks := m.reg.detectLost(now, m.cfg.WorkerTimeout)
			for _, id := range lost {
				m.logger.Info("Worker lost: no heartbeat", "workerID", id, "timeout", m.cfg.WorkerTimeout)
			}
			m.queueUnderReplicated(blocks)
		}
	}
}

// notLeader is the error a standby answers with: it names the leader's RPC
// address when this member knows it.
func (m *Master) notLeader(op string) error {
	_, id := m.journal.Leader()
	addr := ""
	if id != "" {
		if e, err := m.masterAddress(id); err == nil && e != nil {
			addr = e.GetRpcAddress()
		}
	}
	msg := fmt.Sprintf("%s: this master is a standby; the leader is %s", op, addr)
	switch {
	case id == m.journal.ID():
		msg = fmt.Sprintf("%s: this master was just elected and is catching up", op)
		addr = m.AdvertisedAddr()
	case id == "":
		msg = fmt.Sprintf("%s: this master is a standby and no leader is elected now", op)
	case addr == "":
		msg = fmt.Sprintf("%s: this master is a standby; the leader (journal member %s) has not published its address yet", op, id)
	}
	return &meta.NotLeaderError{Leader: addr, Msg: msg}
}

// Methods every member answers; the rest need the leader.
var anyMember = map[string]bool{
	apiv1.MetaMaster_GetMasterInfo_FullMethodName: true,
	apiv1.MetaMaster_GetQuorumInfo_FullMethodName: true,
}

// localReads are served from local state by UnsafeLocalReads.
var localReads = map[string]bool{
	apiv1.FileSystemMaster_GetStatus_FullMethodName:     true,
	apiv1.FileSystemMaster_ListStatus_FullMethodName:    true,
	apiv1.FileSystemMaster_GetMountTable_FullMethodName: true,
}

// leaderInterceptor lets only a serving leader answer, and makes the
// namespace linearizable: before a FileSystemMaster call reads the local
// state (reads, and the checks writes make before journaling) the leader
// confirms with a quorum that it still leads, so a deposed leader that has
// not noticed yet (paused, partitioned) cannot answer from stale state.
// fsMethodPrefix starts the full name of every FileSystemMaster method.
var fsMethodPrefix = "/" + apiv1.FileSystemMaster_ServiceDesc.ServiceName + "/"

func (m *Master) leaderInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx = klog.NewContext(ctx, m.logger.WithValues("rpc", info.FullMethod))
	if anyMember[info.FullMethod] || (m.cfg.UnsafeLocalReads && localReads[info.FullMethod]) {
		return h(ctx, req)
	}
	if !m.lead.serving.Load() {
		return nil, m.notLeader(info.FullMethod)
	}
	if strings.HasPrefix(info.FullMethod, fsMethodPrefix) {
		if err := m.journal.VerifyRead(ctx); err != nil {
			if errors.Is(err, meta.ErrNotLeader) {
				return nil, m.notLeader(info.FullMethod)
			}
			return nil, meta.ToStatus(err)
		}
	}
	resp, err := h(ctx, req)
	if err != nil && errors.Is(meta.FromStatus(err), meta.ErrNotLeader) {
		var nl *meta.NotLeaderError
		if !errors.As(err, &nl) {
			return nil, m.notLeader(info.FullMethod) // leadership lost while journaling
		}
	}
	return resp, err
}
