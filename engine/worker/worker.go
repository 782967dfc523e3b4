package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/grpcstop"
	"github.com/alcove-io/alcove/engine/masterconn"
	"github.com/alcove-io/alcove/engine/ramdisk"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// Worker is one worker daemon.
type Worker struct {
	cfg     Config
	store   *blockstore.Store
	metrics *metrics

	log       klog.Logger
	id        atomic.Int64
	addr      string // advertised gRPC address
	webAddr   string
	dataAddr  string // advertised raw data port address
	data      *dataServer
	grpcSrv   *grpc.Server
	webSrv    *http.Server
	master    apiv1.BlockMasterClient
	conn      *masterconn.Conn
	ramdisk   *ramdisk.Disk // the MEM tier's tmpfs, or nil; never unmounted here (see Close)
	cacher    *asyncCacher
	persister *persister
	repl      *replicator
	work      gate              // writes and incoming replicas, waited for by Drain
	tokens    *security.Keyring // the master's block token keys
	frees     freeGuard

	peersMu sync.Mutex
	peers   map[string]*grpc.ClientConn // other workers (replication pushes)
	mounts  mountConfigs

	bg        context.Context // lives until Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and opens the block store, restoring the blocks a
// previous run left (served once the master accepted them).
func New(cfg Config) (*Worker, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configure worker: %w", err)
	}
	rd := mountRamdisk(cfg)
	store, err := blockstore.Open(context.Background(), cfg.Tiers)
	if err != nil {
		return nil, fmt.Errorf("create worker: %w", err)
	}
	return &Worker{cfg: cfg, store: store, ramdisk: rd, metrics: newMetrics(store), log: klog.Background(), tokens: security.NewKeyring()}, nil
}

// Start listens (gRPC, web, domain socket), registers with the master and
// starts heartbeats; it returns once serving. A master that cannot be
// reached yet is retried in the background while the worker serves.
func (w *Worker) Start(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return fmt.Errorf("start worker: already started")
	}
	w.log = klog.FromContext(ctx).WithName("worker")
	bg, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), w.log))
	w.bg, w.cancel = bg, cancel
	if err := w.listen(bg); err != nil {
		w.Close()
		return err
	}
	conn, err := masterconn.New(masterconn.Config{Addresses: w.cfg.MasterAddresses, RetryTimeout: rpcTimeout,
		DialOptions: []grpc.DialOption{security.DialOption(w.cfg.TLS, security.RoleMaster)}})
	if err != nil {
		w.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	w.conn, w.master = conn, apiv1.NewBlockMasterClient(conn)
	w.cacher = newAsyncCacher(bg, w, w.cfg.AsyncCacheThreads)
	w.persister = newPersister(w)
	w.repl = newReplicator(w)
	rctx, rcancel := context.WithTimeout(bg, 5*time.Second)
	regErr := w.register(rctx)
	rcancel()
	if regErr != nil {
		w.log.Error(regErr, "register with master; retrying in the background", "masters", w.cfg.MasterAddresses)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.heartbeatLoop(bg, regErr == nil)
	}()
	w.log.Info("worker started", "id", w.ID(), "address", w.addr, "web", w.webAddr, "data", w.dataAddr, "domainSocket", w.cfg.DomainSocket, "node", w.cfg.Node)
	return nil
}

func (w *Worker) listen(ctx context.Context) error {
	ln, err := net.Listen("tcp", w.cfg.Address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", w.cfg.Address, err)
	}
	w.addr = advertised(ln.Addr())
	w.grpcSrv = grpc.NewServer(append(security.ServerOptions(w.cfg.TLS, nil), serverOptions(w.metrics)...)...)
	apiv1.RegisterBlockWorkerServer(w.grpcSrv, &blockService{w: w})
	w.goServe("gRPC", func() error { return w.grpcSrv.Serve(ln) })

	if w.cfg.DataAddress != "" {
		dl, err := net.Listen("tcp", w.cfg.DataAddress)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", w.cfg.DataAddress, err)
		}
		if w.cfg.TLS != nil {
			dl = tls.NewListener(dl, w.cfg.TLS.ServerConfig())
		}
		w.dataAddr = advertised(dl.Addr())
		w.data = &dataServer{w: w, ln: dl, conns: map[net.Conn]struct{}{}}
		w.goServe("data port", func() error { return w.data.serve(ctx) })
	}

	if w.cfg.WebAddress != "" {
		wl, err := net.Listen("tcp", w.cfg.WebAddress)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", w.cfg.WebAddress, err)
		}
		w.webAddr = advertised(wl.Addr())
		w.webSrv = &http.Server{Handler: w.webHandler(), ReadHeaderTimeout: 10 * time.Second}
		w.goServe("web", func() error { return w.webSrv.Serve(wl) })
	}

	if w.cfg.DomainSocket != "" {
		if err := os.Remove(w.cfg.DomainSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale domain socket %s: %w", w.cfg.DomainSocket, err)
		}
		ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: w.cfg.DomainSocket, Net: "unix"})
		if err != nil {
			return fmt.Errorf("listen on domain socket %s: %w", w.cfg.DomainSocket, err)
		}
		opts, err := socketAccess(w.cfg.DomainSocket, w.cfg.DomainSocketGroup)
		if err != nil {
			ul.Close()
			return err
		}
		w.goServe("domain socket", func() error { return shortcircuit.Serve(ctx, ul, localHandler{w}, opts) })
	}
	return nil
}

func (w *Worker) goServe(what string, serve func() error) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error(err, "server stopped", "server", what)
		}
	}()
}

// advertised turns a bound address into one peers can dial: an unspecified
// IP (0.0.0.0, ::) becomes the hostname.
func advertised(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Addr returns the advertised gRPC address (the bound address).
func (w *Worker) Addr() string { return w.addr }

// DataAddr returns the advertised raw data port address ("" when disabled).
func (w *Worker) DataAddr() string { return w.dataAddr }

// WebAddr returns the bound web address ("" when disabled).
func (w *Worker) WebAddr() string { return w.webAddr }

// ID returns the id the master assigned (0 until registered).
func (w *Worker) ID() int64 { return w.id.Load() }

// Run starts the worker and serves until ctx is done (SIGTERM); it then
// drains (Drain, bounded by the configured drain timeout) and closes.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DrainTimeout)
	derr := w.Drain(dctx)
	cancel()
	if derr != nil {
		w.log.Error(derr, "drain incomplete; closing anyway (the master retries interrupted persists)")
	}
	return w.Close()
}

// Close stops serving gracefully (in-flight streams get a few seconds),
// stops background work and closes the store. The cache stays on disk for
// the next start, and so does the MEM tier's ramdisk (only `alcove format`
// unmounts it): a restarted worker finds its blocks there. Idempotent.
func (w *Worker) Close() error {
	w.closeOnce.Do(func() {
		if w.cancel != nil {
			w.cancel()
		}
		if w.grpcSrv != nil {
			grpcstop.Stop(w.grpcSrv, grpcstop.Grace)
		}
		if w.data != nil {
			w.data.close()
		}
		if w.webSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w.webSrv.Shutdown(sctx)
			cancel()
		}
		if w.cacher != nil {
			w.cacher.stop()
		}
		if w.persister != nil {
			w.persister.wait()
		}
		if w.repl != nil {
			w.repl.wait()
		}
		w.wg.Wait()
		if w.conn != nil {
			w.conn.Close()
		}
		w.closePeers()
		if w.cfg.DomainSocket != "" && w.started.Load() {
			os.Remove(w.cfg.DomainSocket)
		}
		w.closeErr = w.store.Close()
	})
	return w.closeErr
}

// mountRamdisk mounts the MEM tier's tmpfs when cfg asks for it (a
// restarted worker reuses the one it left, with its blocks); a refusal (no
// privilege, a foreign mount there) leaves the directory as it is.
func mountRamdisk(cfg Config) *ramdisk.Disk {
	if !cfg.Ramdisk {
		return nil
	}
	for _, t := range cfg.Tiers {
		if t.Alias != "MEM" {
			continue
		}
		d, err := ramdisk.Mount(t.Dir, t.QuotaBytes)
		if err != nil {
			klog.Background().Info("MEM tier stays a plain directory: cannot mount its ramdisk", "dir", t.Dir, "err", err)
			return nil
		}
		klog.Background().Info("MEM tier on its own tmpfs ramdisk", "dir", d.Dir, "hugePages", d.Huge, "reused", d.Reused)
		return d
	}
	return nil
}
