package journal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/meta"
)

// Peer is another voting member of the journal group.
type Peer struct {
	ID      string
	Address string // raft transport host:port, as the other members dial it
}

// DefaultElectionTimeout is how long a follower of a multi-member group
// waits without hearing from the leader before it stands for election (raft
// picks a random wait between one and two times this). Alluxio's default is
// 10-20 s; half a second keeps fail-over near one second on loopback and LAN
// while heartbeats (every tenth of it) still tolerate scheduling hiccups.
const DefaultElectionTimeout = 500 * time.Millisecond

// Config configures a journal member.
type Config struct {
	// Dir is the master's state directory; raft keeps its log and stable
	// store in Dir/journal/raft.db and snapshots in Dir/journal/snapshots.
	Dir string
	// ID is this member's raft server id (default "master-0").
	ID string
	// BindAddress is the raft transport listen address. Empty means a
	// single-member group with an in-process transport (no port is opened).
	BindAddress string
	// Advertise is the address the other members dial to reach this one
	// (default: the bound address). It may be a DNS name, resolved at each
	// dial, so a restarted pod with a new IP keeps its place in the group.
	Advertise string
	// Peers are the other voters, used when the group is bootstrapped.
	Peers []Peer
	// ListenTLS and DialTLS, when set, run the raft transport over TLS:
	// the server and client sides (security.Source.PeerConfigs, mutual and
	// limited to masters). Set both or neither.
	ListenTLS, DialTLS *tls.Config
	// ElectionTimeout tunes leader failure detection of a multi-member group
	// (default DefaultElectionTimeout).
	ElectionTimeout time.Duration
	// SnapshotThreshold is how many entries trigger an automatic snapshot
	// (default 8192); TrailingLogs how many entries stay after it (default 10240).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// RetainSnapshots is how many snapshots are kept (default 2).
	RetainSnapshots int
	Logger          klog.Logger
}

// Journal is one member of the replicated journal.
type Journal struct {
	cfg     Config
	raft    *raft.Raft
	logs    *raftboltdb.BoltStore
	snaps   *raft.FileSnapshotStore
	trans   raft.Transport
	sm      StateMachine
	logger  klog.Logger
	reads   readBarrier
	peers   *peerHealth
	notify  chan bool     // raft's leadership notifications
	changed chan struct{} // coalesced leadership changes for the owner
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
}

// Open opens (bootstrapping on first use) the journal and starts replaying
// committed entries into sm.
func Open(cfg Config, sm StateMachine) (*Journal, error) {
	if cfg.ID == "" {
		cfg.ID = "master-0"
	}
	if cfg.RetainSnapshots <= 0 {
		cfg.RetainSnapshots = 2
	}
	logger := cfg.Logger
	if logger.GetSink() == nil {
		logger = klog.Background()
	}
	logger = logger.WithName("journal")
	dir := filepath.Join(cfg.Dir, "journal")
	if err := fsutil.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	hl := newHCLogger(logger)
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.RetainSnapshots, hl)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("open snapshot store %s: %w", dir, err)
	}
	if err := fsutil.SyncDir(dir); err != nil { // raft.db and snapshots/ may be new
		logs.Close()
		return nil, err
	}
	if len(cfg.Peers) > 0 && cfg.BindAddress == "" {
		logs.Close()
		return nil, fmt.Errorf("%w: a journal with peers needs a bind address", meta.ErrInvalidArgument)
	}
	j := &Journal{cfg: cfg, logs: logs, snaps: snaps, sm: sm, logger: logger,
		notify: make(chan bool, 1), changed: make(chan struct{}, 1), stop: make(chan struct{})}
	if err := j.reconcile(); err != nil {
		logs.Close()
		return nil, err
	}
	if err := j.start(hl); err != nil {
		logs.Close()
		return nil, err
	}
	return j, nil
}

func (j *Journal) start(hl *hcLogger) error {
	cfg := j.cfg
	var addr raft.ServerAddress
	if cfg.BindAddress == "" {
		addr, j.trans = raft.NewInmemTransport(raft.ServerAddress(cfg.ID))
	} else {
		t, err := newTCPTransport(cfg.BindAddress, cfg.Advertise, cfg.ListenTLS, cfg.DialTLS, hl)
		if err != nil {
			return err
		}
		addr, j.trans = t.LocalAddr(), t
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.NoSnapshotRestoreOnStart = true // the store is persistent; see reconcile
	rc.NotifyCh = j.notify
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	tuneTimeouts(rc, len(cfg.Peers), cfg.ElectionTimeout)
	has, err := raft.HasExistingState(j.logs, j.logs, j.snaps)
	if err != nil {
		j.closeTransport()
		return fmt.Errorf("inspect journal state: %w", err)
	}
	r, err := raft.NewRaft(rc, &fsm{sm: j.sm, logger: j.logger}, j.logs, j.logs, j.snaps, j.trans)
	if err != nil {
		j.closeTransport()
		return fmt.Errorf("start raft: %w", err)
	}
	j.raft = r
	j.reads.verify = func() error { return r.VerifyLeader().Error() }
	j.peers = watchPeers(r, &j.wg, j.stop)
	j.wg.Add(1)
	go j.forwardLeadership()
	if !has {
		servers := []raft.Server{{ID: rc.LocalID, Address: addr, Suffrage: raft.Voter}}
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			j.stopRaft()
			return fmt.Errorf("bootstrap journal: %w", err)
		}
	}
	return nil
}

// tuneTimeouts sets raft's failure detection. A lone member has nobody to
// wait for; a group detects a dead leader after one to two election
// timeouts. The leader lease (a leader that cannot reach a quorum for this
// long steps down) stays below the heartbeat timeout, as raft requires.
func tuneTimeouts(rc *raft.Config, peers int, election time.Duration) {
	if peers == 0 {
		rc.HeartbeatTimeout = 150 * time.Millisecond
		rc.ElectionTimeout = 150 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
		return
	}
	if election <= 0 {
		election = DefaultElectionTimeout
	}
	rc.HeartbeatTimeout = election
	rc.ElectionTimeout = election
	rc.LeaderLeaseTimeout = election / 2
	// Followers learn the commit index at least this often, so their state
	// (and a new leader's catch-up) trails the leader by little.
	rc.CommitTimeout = 10 * time.Millisecond
}

// forwardLeadership drains raft's notification channel (raft blocks on it)
// into a coalescing signal for the owner.
func (j *Journal) forwardLeadership() {
	defer j.wg.Done()
	for {
		select {
		case <-j.stop:
			return
		case <-j.notify:
			select {
			case j.changed <- struct{}{}:
			default:
			}
		}
	}
}

// LeadershipChanges signals (coalesced) whenever this member gains or loses
// leadership; the receiver reads IsLeader and Term for the current state.
func (j *Journal) LeadershipChanges() <-chan struct{} { return j.changed }

// Term returns the current raft term.
func (j *Journal) Term() uint64 { return j.raft.CurrentTerm() }

// reconcile restores the newest snapshot into the state machine when the
// store lacks entries that the raft log no longer holds (for example a store
// that was lost or replaced by an older copy). Raft itself never restores on
// start (NoSnapshotRestoreOnStart) and replays only entries after the snapshot.
func (j *Journal) reconcile() error {
	metas, err := j.snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	applied := j.sm.AppliedIndex()
	last, err := j.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read raft log: %w", err)
	}
	if len(metas) > 0 {
		last = max(last, metas[0].Index)
	}
	if applied > last {
		// New entries would be numbered below the applied index and skipped.
		return fmt.Errorf("%w: the state store has applied journal index %d but the journal in %s ends at %d: the journal was lost or replaced; restore it or format the master",
			meta.ErrFailedPrecondition, applied, filepath.Join(j.cfg.Dir, "journal"), last)
	}
	if len(metas) == 0 {
		return nil
	}
	snap := metas[0]
	need := false
	for idx := applied + 1; idx <= snap.Index; idx++ {
		var l raft.Log
		if err := j.logs.GetLog(idx, &l); err != nil {
			need = true // compacted away: only the snapshot has it
			break
		}
		if l.Type == raft.LogCommand {
			need = true
			break
		}
	}
	if !need {
		return nil
	}
	j.logger.Info("Restoring state from snapshot", "snapshot", snap.ID, "snapshotIndex", snap.Index, "appliedIndex", applied)
	_, rc, err := j.snaps.Open(snap.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", snap.ID, err)
	}
	defer rc.Close()
	if err := j.sm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", snap.ID, err)
	}
	return nil
}

// WaitLeader blocks until this member leads the group and every committed
// entry has been applied to the state machine.
func (j *Journal) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for j.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for journal leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
	return j.Barrier(ctx)
}

// Barrier waits until every entry committed before it is applied to the
// state machine. A new leader calls it before serving: entries of earlier
// terms are then either applied or never will be.
func (j *Journal) Barrier(ctx context.Context) error {
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := wait(ctx, j.raft.Barrier(timeout)); err != nil {
		return fmt.Errorf("catch up journal: %w", mapRaftErr(err))
	}
	return nil
}

// VerifyRead confirms, after the call, that this member still leads a
// quorum, so that state read next is not stale (a deposed leader that has not
// noticed yet fails here). Concurrent callers share one round of heartbeats.
func (j *Journal) VerifyRead(ctx context.Context) error {
	if err := j.reads.wait(ctx); err != nil {
		return fmt.Errorf("verify journal leadership: %w", mapRaftErr(err))
	}
	return nil
}

// IsLeader reports whether this member currently leads the group.
func (j *Journal) IsLeader() bool { return j.raft.State() == raft.Leader }

// Leader returns the raft address and id of the current leader, if known.
func (j *Journal) Leader() (address, id string) {
	a, i := j.raft.LeaderWithID()
	return string(a), string(i)
}

// ID returns this member's raft server id.
func (j *Journal) ID() string { return j.cfg.ID }

// AppliedIndex returns the index of the last entry applied to the state machine.
func (j *Journal) AppliedIndex() uint64 { return j.sm.AppliedIndex() }

// LastIndex returns the index of the last entry in the log.
func (j *Journal) LastIndex() uint64 { return j.raft.LastIndex() }

// Dir returns the directory holding the raft log and snapshots.
func (j *Journal) Dir() string { return filepath.Join(j.cfg.Dir, "journal") }

// Apply replicates e, waits until it is committed and applied, and returns
// the state machine's result. The leader stamps e.TimeMs when it is zero.
func (j *Journal) Apply(ctx context.Context, e *apiv1.JournalEntry) (any, error) {
	if e.GetTimeMs() == 0 {
		e.TimeMs = time.Now().UnixMilli()
	}
	data, err := proto.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode journal entry: %w", err)
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f := j.raft.Apply(data, timeout)
	if err := wait(ctx, f); err != nil {
		return nil, fmt.Errorf("apply journal entry: %w", mapRaftErr(err))
	}
	res, ok := f.Response().(Result)
	if !ok {
		return nil, fmt.Errorf("apply journal entry: unexpected response %T", f.Response())
	}
	return res.Value, res.Err
}

// Checkpoint takes a snapshot now (so the log can be truncated) and returns
// the index it covers. With nothing new since the last snapshot it returns
// that snapshot's index.
func (j *Journal) Checkpoint(ctx context.Context) (uint64, error) {
	f := j.raft.Snapshot()
	if err := wait(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			metas, lerr := j.snaps.List()
			if lerr == nil && len(metas) > 0 {
				return metas[0].Index, nil
			}
		}
		return 0, fmt.Errorf("checkpoint journal: %w", mapRaftErr(err))
	}
	m, rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("open checkpoint: %w", err)
	}
	rc.Close()
	j.logger.Info("Journal checkpoint written", "index", m.Index, "snapshot", m.ID)
	return m.Index, nil
}

// Close stops the member; it is safe to call more than once. The state
// machine is not closed: its owner does that.
func (j *Journal) Close() error {
	j.closeMu.Lock()
	defer j.closeMu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	errs := []error{j.stopRaft()}
	if err := j.logs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft log: %w", err))
	}
	return errors.Join(errs...)
}

// stopRaft shuts raft down, stops the journal's goroutines and closes the
// transport.
func (j *Journal) stopRaft() error {
	var errs []error
	if j.raft != nil {
		if err := j.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	}
	close(j.stop)
	j.wg.Wait()
	errs = append(errs, j.closeTransport())
	return errors.Join(errs...)
}

func (j *Journal) closeTransport() error {
	if c, ok := j.trans.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("close journal transport: %w", err)
		}
	}
	return nil
}

// wait waits for a raft future or the context, whichever ends first.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-done:
		return err
	}
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%v: %w", err, meta.ErrNotLeader)
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%v: %w", err, meta.ErrUnavailable)
	}
	return err
}
