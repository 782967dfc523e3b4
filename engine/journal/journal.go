package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
	Address string // raft transport host:port
}

// Config configures a journal member.
type Config struct {
	// Dir is the master's state directory; raft keeps its log and stable
	// store in Dir/journal/raft.db and snapshots in Dir/journal/snapshots.
	Dir string
	// ID is this member's raft server id (default "master-0").
	ID string
	// BindAddress is the raft transport address. Empty means a single-member
	// group with an in-process transport (no port is opened).
	BindAddress string
	// Peers are the other voters, used when the group is bootstrapped.
	Peers []Peer
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
	j := &Journal{cfg: cfg, logs: logs, snaps: snaps, sm: sm, logger: logger}
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
		tcpAddr, err := net.ResolveTCPAddr("tcp", cfg.BindAddress)
		if err != nil {
			return fmt.Errorf("resolve journal address %s: %w", cfg.BindAddress, err)
		}
		var advertise net.Addr = tcpAddr
		if tcpAddr.Port == 0 {
			advertise = nil // advertise the port actually bound
		}
		t, err := raft.NewTCPTransportWithLogger(cfg.BindAddress, advertise, 3, 10*time.Second, hl)
		if err != nil {
			return fmt.Errorf("listen journal transport %s: %w", cfg.BindAddress, err)
		}
		addr, j.trans = t.LocalAddr(), t
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.NoSnapshotRestoreOnStart = true // the store is persistent; see reconcile
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if len(cfg.Peers) == 0 {
		// Alone in the group: nobody to wait for, so elect quickly.
		rc.HeartbeatTimeout = 150 * time.Millisecond
		rc.ElectionTimeout = 150 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}
	has, err := raft.HasExistingState(j.logs, j.logs, j.snaps)
	if err != nil {
		return fmt.Errorf("inspect journal state: %w", err)
	}
	r, err := raft.NewRaft(rc, &fsm{sm: j.sm, logger: j.logger}, j.logs, j.logs, j.snaps, j.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	j.raft = r
	if !has {
		servers := []raft.Server{{ID: rc.LocalID, Address: addr, Suffrage: raft.Voter}}
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			r.Shutdown()
			return fmt.Errorf("bootstrap journal: %w", err)
		}
	}
	return nil
}

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
	if err := j.raft.Barrier(0).Error(); err != nil {
		return fmt.Errorf("catch up journal: %w", mapRaftErr(err))
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
	done := make(chan struct{})
	go func() {
		_ = f.Error()
		close(done)
	}()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("apply journal entry: %w", ctx.Err())
	case <-done:
	}
	if err := f.Error(); err != nil {
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
	done := make(chan struct{})
	go func() {
		_ = f.Error()
		close(done)
	}()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("checkpoint journal: %w", ctx.Err())
	case <-done:
	}
	if err := f.Error(); err != nil {
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
	var errs []error
	if j.raft != nil {
		if err := j.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	}
	if c, ok := j.trans.(io.Closer); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close journal transport: %w", err))
		}
	}
	if err := j.logs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft log: %w", err))
	}
	return errors.Join(errs...)
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
