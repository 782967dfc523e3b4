// Package master is Alcove's metadata master: the inode tree and mount table
// in an embedded store fed by the replicated journal, UFS metadata loading,
// the in-memory worker registry and block locations, and the three gRPC
// services (FileSystemMaster, MetaMaster, BlockMaster).
//
// Masters may form an HA group (Config.JournalPeers): the journal's leader
// serves and the others answer as standbys, naming it (leadership.go);
// journaling calls run once per client request id (requests.go).
package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/grpcstop"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/ufs"
)

// Version is reported by GetMasterInfo; the build sets it.
var Version = "dev"

// Default addresses (Alluxio's ports).
var (
	DefaultAddress    = meta.HostPort("127.0.0.1", meta.MasterRPCPort)
	DefaultWebAddress = meta.HostPort("0.0.0.0", meta.MasterWebPort)
)

// Defaults.
const (
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
	// MetadataSyncInterval (alluxio.user.file.metadata.sync.interval): an
	// access re-reads a path's UFS metadata when it is older than this.
	// 0 or negative: never (the default); SyncAlways: on every access.
	// Mounts and requests may set their own.
	MetadataSyncInterval time.Duration
	// Journal membership (single member when JournalPeers is empty):
	// this member's id, the raft address it binds and the one the others
	// dial (default: the bound one), the other members, and the election
	// timeout of a group (journal.DefaultElectionTimeout).
	JournalID              string
	JournalBindAddress     string
	JournalAdvertise       string
	JournalPeers           []journal.Peer
	JournalElectionTimeout time.Duration
	// AdvertiseAddress is the RPC address standbys give clients to reach
	// this master when it leads (default: the bound address).
	AdvertiseAddress string
	// UnsafeLocalReads serves reads from this member's local state without
	// checking leadership (no read barrier, also on standbys). It breaks
	// linearizability and exists only to show that the failover tests catch
	// stale reads. Never set it in production.
	UnsafeLocalReads bool
	// TokenLifetime is how long a block token is valid (default
	// security.DefaultTokenLifetime).
	TokenLifetime time.Duration
	// TLS, when set, makes the gRPC server require client certificates
	// from the cluster CA and apply security.Cluster, and the journal's
	// raft transport use mTLS between masters; nil: plaintext.
	TLS *security.Source
	// Users verifies ServiceAccount tokens (security.TokenReviewer in
	// Kubernetes); nil accepts none.
	Users security.Authenticator
	// Superusers and SuperGroups are users and groups whose permissions
	// are not checked (alcove.security.superusers / supergroups).
	Superusers, SuperGroups []string
}

// Master is a running metadata master.
type Master struct {
	cfg     Config
	logger  klog.Logger
	store   *journal.BoltFSM
	journal *journal.Journal
	reg     *registry
	cidx    *cacheIndex
	done    chan struct{} // closed when the master stops
	persist *persistTracker
	tokens  *security.Signer // block tokens; its keys go to workers
	locks   *inodeLocks      // orders UFS-and-journal operations on a path
	synced  syncTimes
	metrics *metrics
	started time.Time
	lead    leadership

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
	if cfg.Superusers == nil {
		// Alluxio's default: the user the master runs as.
		if u, err := user.Current(); err == nil {
			cfg.Superusers = []string{u.Username}
		}
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
	var err error
	m := &Master{cfg: cfg, reg: newRegistry(cidx), cidx: cidx, done: make(chan struct{}), persist: newPersistTracker(cfg.PersistRetryInterval), locks: newInodeLocks()}
	m.lead.first, m.lead.failed = make(chan struct{}), make(chan error, 1)
	m.metrics = newMetrics(m)
	if m.tokens, err = security.NewSigner(cfg.TokenLifetime); err != nil {
		return nil, err
	}
	return m, nil
}

// Start opens the store and journal and starts serving. A lone master
// (no journal peers) returns once it leads and serves; a member of a group
// returns once it listens: it serves as the leader when elected and answers
// as a standby (NotLeader, naming the leader) until then.
func (m *Master) Start(ctx context.Context) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running || m.closed {
		return fmt.Errorf("%w: master already started", meta.ErrFailedPrecondition)
	}
	m.logger = klog.FromContext(ctx).WithName("master")
	m.started = time.Now()
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
	if m.lis, err = net.Listen("tcp", m.cfg.Address); err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Address, err)
	}
	jcfg := journal.Config{
		Dir: m.cfg.Dir, ID: m.cfg.JournalID, BindAddress: m.cfg.JournalBindAddress, Advertise: m.cfg.JournalAdvertise,
		Peers: m.cfg.JournalPeers, ElectionTimeout: m.cfg.JournalElectionTimeout, Logger: m.logger,
	}
	if m.cfg.TLS != nil {
		jcfg.ListenTLS, jcfg.DialTLS = m.cfg.TLS.PeerConfigs(security.RoleMaster)
	}
	m.journal, err = journal.Open(jcfg, m.store)
	if err != nil {
		return err
	}
	m.grpcSrv = grpc.NewServer(append(security.ServerOptions(m.cfg.TLS, m.cfg.Users),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(m.metrics.interceptor, m.leaderInterceptor, m.permInterceptor),
	)...)
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
	m.goLoop(func() { m.leadershipLoop(bg) })
	if len(m.cfg.JournalPeers) == 0 {
		select {
		case <-m.lead.first:
		case err := <-m.lead.failed:
			return fmt.Errorf("start serving: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("wait for journal leadership: %w", ctx.Err())
		}
	}
	m.running = true
	m.logger.Info("Master started", "address", m.Addr(), "web", m.WebAddr(), "dir", m.cfg.Dir, "rootUFS", m.cfg.RootUFS,
		"journalID", m.journal.ID(), "journalPeers", len(m.cfg.JournalPeers))
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
// store written before directories kept the count (their link count). A
// new leader calls it; standbys get the count from its journal entry.
func (m *Master) countChildDirs(ctx context.Context) error {
	var done bool
	if err := m.store.View(func(tx *bbolt.Tx) error { done = counter(tx, kChildDirsCounted) != 0; return nil }); err != nil {
		return err
	}
	if done {
		return nil
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

// Addr returns the bound gRPC address ("" before Start).
func (m *Master) Addr() string {
	if m.lis == nil {
		return ""
	}
	return m.lis.Addr().String()
}

// AdvertisedAddr is the RPC address clients are sent to when this master leads.
func (m *Master) AdvertisedAddr() string {
	if m.cfg.AdvertiseAddress != "" {
		return m.cfg.AdvertiseAddress
	}
	return m.Addr()
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
		grpcstop.Stop(m.grpcSrv, grpcstop.Grace)
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
		m.cancel() // the leadership loop steps down and returns
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

// listingTokens: listings carry block tokens only for the job tier, whose
// planner turns a listing into cache tasks (and with TLS off, where no
// caller is authenticated anyway). Other readers get a file's token with
// its own GetStatus.
func listingTokens(ctx context.Context) bool {
	p, ok := security.PeerFrom(ctx)
	return !ok || p.Role == security.RoleJob
}

// grant attaches a block token for access a to a file's metadata (not to
// a directory's).
func (m *Master) grant(ctx context.Context, fi *apiv1.FileInfo, a security.Access) error {
	if fi == nil || fi.GetFolder() || (a == security.AccessRead && !m.mayRead(ctx, fi)) {
		return nil // no token: a worker refuses this caller the file's blocks
	}
	tok, err := m.tokens.Sign(security.ScopeOf(fi, a))
	if err != nil {
		return err
	}
	fi.BlockToken = tok
	return nil
}
