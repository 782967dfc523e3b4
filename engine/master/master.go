// Package master is Alcove's metadata master: the inode tree and mount table
// in an embedded store fed by the replicated journal, UFS metadata loading,
// the in-memory worker registry and block locations, and the three gRPC
// services (FileSystemMaster, MetaMaster, BlockMaster).
package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// Version is reported by GetMasterInfo; the build sets it.
var Version = "dev"

// Defaults (Alluxio's ports).
const (
	DefaultAddress       = "127.0.0.1:19998"
	DefaultWebAddress    = "0.0.0.0:19999"
	DefaultWorkerTimeout = 10 * time.Second
	maxMsgSize           = 64 << 20
)

// Config configures a master.
type Config struct {
	// Dir holds the metadata store (Dir/metadata.db) and the journal (Dir/journal).
	Dir string
	// Address is the gRPC listen address (default DefaultAddress; port 0 picks one).
	Address string
	// WebAddress serves /metrics, /healthz and a summary page; "" disables it
	// (callers wanting the default pass DefaultWebAddress).
	WebAddress string
	// RootUFS is mounted at / when the store is new (default Dir/underFSStorage).
	RootUFS string
	// RootUFSProperties are the root mount's properties.
	RootUFSProperties map[string]string
	// WorkerTimeout: a worker silent this long is lost (default 10 s).
	WorkerTimeout time.Duration
	// TTLCheckInterval is how often expired TTLs are acted on (default 1 s).
	TTLCheckInterval time.Duration
	// PersistRetryInterval: a persist command is not re-issued sooner (default 30 s).
	PersistRetryInterval time.Duration
	// DefaultBlockSize for files created without one (default 64 MiB).
	DefaultBlockSize int64
	// Journal membership (single member when JournalPeers is empty).
	JournalID          string
	JournalBindAddress string
	JournalPeers       []journal.Peer
}

// Master is a running metadata master.
type Master struct {
	cfg     Config
	logger  klog.Logger
	store   *journal.BoltFSM
	journal *journal.Journal
	reg     *registry
	cidx    *cacheIndex
	epoch   string        // identifies this run's node cache index
	done    chan struct{} // closed when the master stops
	persist *persistTracker
	locks   *inodeLocks // orders UFS-and-journal operations on a path
	metrics *metrics
	started time.Time

	grpcSrv *grpc.Server
	lis     net.Listener
	webSrv  *http.Server
	webLis  net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running bool
	closed  bool
}

// New validates cfg and builds a master; Start brings it up.
func New(cfg Config) (*Master, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: master needs a state directory", meta.ErrInvalidArgument)
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.WorkerTimeout <= 0 {
		cfg.WorkerTimeout = DefaultWorkerTimeout
	}
	if cfg.TTLCheckInterval <= 0 {
		cfg.TTLCheckInterval = time.Second
	}
	if cfg.PersistRetryInterval <= 0 {
		cfg.PersistRetryInterval = 30 * time.Second
	}
	if cfg.DefaultBlockSize == 0 {
		cfg.DefaultBlockSize = meta.DefaultBlockSize
	}
	if err := meta.ValidateBlockSize(cfg.DefaultBlockSize); err != nil {
		return nil, fmt.Errorf("configure master: %w", err)
	}
	if cfg.RootUFS == "" {
		cfg.RootUFS = filepath.Join(cfg.Dir, "underFSStorage")
		if abs, err := filepath.Abs(cfg.RootUFS); err == nil {
			cfg.RootUFS = abs
		}
	}
	if _, _, err := ufs.Resolve(cfg.RootUFS, cfg.RootUFSProperties); err != nil {
		return nil, fmt.Errorf("configure root UFS: %w", err)
	}
	cidx := newCacheIndex()
	m := &Master{cfg: cfg, reg: newRegistry(cidx), cidx: cidx, done: make(chan struct{}), persist: newPersistTracker(cfg.PersistRetryInterval), locks: newInodeLocks()}
	m.metrics = newMetrics(m)
	return m, nil
}

// Start opens the store and journal, waits to lead the journal group, mounts
// the root UFS on a new store and starts serving. It returns once serving.
func (m *Master) Start(ctx context.Context) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running || m.closed {
		return fmt.Errorf("%w: master already started", meta.ErrFailedPrecondition)
	}
	m.logger = klog.FromContext(ctx).WithName("master")
	m.started = time.Now()
	m.epoch = newEpoch()
	defer func() {
		if err != nil {
			m.shutdownLocked()
		}
	}()
	if err := fsutil.MkdirAll(m.cfg.Dir); err != nil {
		return fmt.Errorf("create master dir: %w", err)
	}
	if m.store, err = journal.OpenBolt(filepath.Join(m.cfg.Dir, "metadata.db"), applyEntry); err != nil {
		return err
	}
	if err := m.store.Init(ensureBuckets); err != nil {
		return fmt.Errorf("initialize metadata store: %w", err)
	}
	m.journal, err = journal.Open(journal.Config{
		Dir: m.cfg.Dir, ID: m.cfg.JournalID, BindAddress: m.cfg.JournalBindAddress,
		Peers: m.cfg.JournalPeers, Logger: m.logger,
	}, m.store)
	if err != nil {
		return err
	}
	if err := m.journal.WaitLeader(ctx); err != nil {
		return err
	}
	if err := m.mountRoot(ctx); err != nil {
		return err
	}
	if err := m.ensureClusterID(ctx); err != nil {
		return err
	}
	if err := m.countChildDirs(ctx); err != nil {
		return err
	}
	if err := m.refreshMounts(); err != nil {
		return err
	}
	if m.lis, err = net.Listen("tcp", m.cfg.Address); err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Address, err)
	}
	m.grpcSrv = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(m.metrics.interceptor, m.leaderInterceptor),
	)
	m.Register(m.grpcSrv)
	if m.cfg.WebAddress != "" {
		if m.webLis, err = net.Listen("tcp", m.cfg.WebAddress); err != nil {
			return fmt.Errorf("listen on %s: %w", m.cfg.WebAddress, err)
		}
		m.webSrv = &http.Server{Handler: m.webHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	bg, cancel := context.WithCancel(klog.NewContext(context.Background(), m.logger))
	m.cancel = cancel
	m.goLoop(func() {
		if err := m.grpcSrv.Serve(m.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			m.logger.Error(err, "gRPC server stopped")
		}
	})
	if m.webSrv != nil {
		m.goLoop(func() {
			if err := m.webSrv.Serve(m.webLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.logger.Error(err, "Web server stopped")
			}
		})
	}
	m.goLoop(func() { m.lostWorkerLoop(bg) })
	m.goLoop(func() { m.ttlLoop(bg) })
	m.running = true
	m.logger.Info("Master serving", "address", m.Addr(), "web", m.WebAddr(), "dir", m.cfg.Dir, "rootUFS", m.cfg.RootUFS)
	return nil
}

func (m *Master) goLoop(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

// mountRoot mounts the root UFS when the store is new.
func (m *Master) mountRoot(ctx context.Context) error {
	var root *apiv1.MountPointInfo
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := mounts(tx)
		root = mountOf(all, "/")
		return err
	})
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if root != nil {
		if root.UfsUri != m.cfg.RootUFS {
			m.logger.Info("Root UFS in the store differs from the configured one; keeping the store's", "stored", root.UfsUri, "configured", m.cfg.RootUFS)
		}
		return nil
	}
	if u, err := ufs.ParseURI(m.cfg.RootUFS); err == nil && u.Scheme == "file" {
		if err := os.MkdirAll(u.Path, 0o755); err != nil {
			return fmt.Errorf("create root UFS %s: %w", u.Path, err)
		}
	}
	_, err = m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_AddMount{AddMount: &apiv1.AddMountEntry{
		Mount: &apiv1.MountPointInfo{AlcovePath: "/", UfsUri: m.cfg.RootUFS, Properties: m.cfg.RootUFSProperties},
	}}})
	if err != nil {
		return fmt.Errorf("mount root UFS %s: %w", m.cfg.RootUFS, err)
	}
	return nil
}

// countChildDirs counts every directory's subdirectories once, for a
// store written before directories kept the count (their link count).
func (m *Master) countChildDirs(ctx context.Context) error {
	var done bool
	if err := m.store.View(func(tx *bbolt.Tx) error { done = counter(tx, kChildDirsCounted) != 0; return nil }); err != nil {
		return err
	}
	if done || !m.journal.IsLeader() {
		return nil // a standby gets the count from the leader's journal
	}
	_, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CountChildDirs{CountChildDirs: &apiv1.CountChildDirsEntry{}}})
	if err != nil {
		return fmt.Errorf("count subdirectories: %w", err)
	}
	return nil
}

// Register adds the master's gRPC services to s.
func (m *Master) Register(s *grpc.Server) {
	apiv1.RegisterFileSystemMasterServer(s, &fsServer{m: m})
	apiv1.RegisterMetaMasterServer(s, &metaServer{m: m})
	apiv1.RegisterBlockMasterServer(s, &blockServer{m: m})
}

func (m *Master) leaderInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod != apiv1.MetaMaster_GetMasterInfo_FullMethodName && !m.journal.IsLeader() {
		addr, _ := m.journal.Leader()
		return nil, meta.ToStatus(fmt.Errorf("%s (leader: %q): %w", info.FullMethod, addr, meta.ErrNotLeader))
	}
	return h(klog.NewContext(ctx, m.logger.WithValues("rpc", info.FullMethod)), req)
}

// Addr returns the bound gRPC address ("" before Start).
func (m *Master) Addr() string {
	if m.lis == nil {
		return ""
	}
	return m.lis.Addr().String()
}

// WebAddr returns the bound web address ("" when disabled or before Start).
func (m *Master) WebAddr() string {
	if m.webLis == nil {
		return ""
	}
	return m.webLis.Addr().String()
}

// CachedBytesByNode returns the bytes cached on each node (node name →
// bytes), maintained incrementally as workers add and remove blocks.
func (m *Master) CachedBytesByNode() map[string]int64 { return m.reg.nodeCachedBytes() }

// Close stops serving and closes the journal and store. It is idempotent.
func (m *Master) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return m.shutdownLocked()
}

func (m *Master) shutdownLocked() error {
	m.running = false
	select {
	case <-m.done:
	default:
		close(m.done) // ends node cache watch streams
	}
	if m.grpcSrv != nil {
		done := make(chan struct{})
		go func() {
			m.grpcSrv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			m.grpcSrv.Stop()
		}
	} else if m.lis != nil {
		m.lis.Close()
	}
	if m.webSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.webSrv.Shutdown(ctx)
		cancel()
	} else if m.webLis != nil {
		m.webLis.Close()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	var errs []error
	if m.journal != nil {
		errs = append(errs, m.journal.Close())
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.logger.GetSink() != nil {
		m.logger.Info("Master stopped", "dir", m.cfg.Dir)
	}
	return errors.Join(errs...)
}

// Run starts the master, serves until ctx is done, then closes it.
func (m *Master) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
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

// apply journals e and frees the cached blocks of files it removed.
func (m *Master) apply(ctx context.Context, e *apiv1.JournalEntry) (applyResult, error) {
	v, err := m.journal.Apply(ctx, e)
	if err != nil {
		return applyResult{}, err
	}
	res, _ := v.(applyResult)
	if len(res.Removed) > 0 {
		m.reg.freeFiles(res.Removed)
		m.persist.forget(res.Removed)
	}
	return res, nil
}

// applyAll journals independent entries concurrently (the journal batches
// them into shared commits) and returns each one's result and error.
func (m *Master) applyAll(ctx context.Context, entries []*apiv1.JournalEntry) ([]applyResult, []error) {
	res := make([]applyResult, len(entries))
	errs := make([]error, len(entries))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i], errs[i] = m.apply(ctx, e)
		}()
	}
	wg.Wait()
	return res, errs
}

func (m *Master) now() time.Time { return time.Now() }
