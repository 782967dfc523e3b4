package job

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// WorkerConfig configures a job worker.
type WorkerConfig struct {
	// JobMasterAddress is the job master's RPC address.
	JobMasterAddress string
	// MasterAddresses are the filesystem masters.
	MasterAddresses []string
	// Node is this node's name: block tasks go to the filesystem worker
	// registered with the same node name.
	Node string
	// Labels are matched by jobs' node selectors.
	Labels map[string]string
	// Address serves gRPC health (default DefaultWorkerAddress; port 0 picks one).
	Address string
	// WebAddress serves /metrics and /healthz; "" disables it.
	WebAddress string
	// Slots bounds the tasks run at once (default 4).
	Slots int
	// BandwidthBytes caps the bytes per second this job worker loads or
	// copies (token bucket; 0: no cap), so a load leaves room for readers.
	BandwidthBytes int64
	// HeartbeatInterval (default 1 s); a finished task is reported at once.
	HeartbeatInterval time.Duration
	// TLS is the job worker's certificate (role job) for the masters, the
	// job master, workers and its own gRPC server; nil: plaintext.
	TLS *security.Source
}

// Worker is a running job worker.
type Worker struct {
	cfg     WorkerConfig
	logger  klog.Logger
	fs      *client.Client
	jm      *client.JobClient
	limiter *rate.Limiter
	reg     *prometheus.Registry
	bytes   *prometheus.CounterVec

	srv servers

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup // servers and the heartbeat loop
	tasks  sync.WaitGroup // running tasks
	once   sync.Once

	mu      sync.Mutex
	id      int64
	running map[int64]context.CancelFunc
	results []*apiv1.TaskResult
}

// NewWorker validates cfg.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.JobMasterAddress == "" {
		return nil, fmt.Errorf("%w: a job worker needs the job master's address", meta.ErrInvalidArgument)
	}
	if cfg.Node == "" {
		return nil, fmt.Errorf("%w: a job worker needs its node name", meta.ErrInvalidArgument)
	}
	if cfg.Address == "" {
		cfg.Address = DefaultWorkerAddress
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 4
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.BandwidthBytes < 0 {
		return nil, fmt.Errorf("%w: bandwidth %d must not be negative", meta.ErrInvalidArgument, cfg.BandwidthBytes)
	}
	w := &Worker{cfg: cfg, kick: make(chan struct{}, 1), running: map[int64]context.CancelFunc{}, reg: prometheus.NewRegistry()}
	if cfg.BandwidthBytes > 0 {
		// A burst of 8 MiB (or the whole cap, if smaller) keeps waits short.
		w.limiter = rate.NewLimiter(rate.Limit(cfg.BandwidthBytes), int(min(cfg.BandwidthBytes, 8<<20)))
	}
	w.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "job_worker", Name: "bytes_total",
		Help: "Bytes this job worker loaded into its node's cache or copied, by job type."}, []string{"type"})
	w.reg.MustRegister(w.bytes, collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "job_worker", Name: "tasks_running",
			Help: "Tasks running now."}, func() float64 { w.mu.Lock(); defer w.mu.Unlock(); return float64(len(w.running)) }))
	return w, nil
}

// Start connects, starts serving and heartbeating; registration with the
// job master is retried in the background until it answers.
func (w *Worker) Start(ctx context.Context) (err error) {
	w.logger = klog.FromContext(ctx).WithName("job-worker").WithValues("node", w.cfg.Node)
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.fs, err = client.New(client.Config{MasterAddresses: w.cfg.MasterAddresses, Node: w.cfg.Node, RetryTimeout: 10 * time.Second, TLS: w.cfg.TLS}); err != nil {
		return err
	}
	if w.jm, err = client.NewJobClient(w.cfg.JobMasterAddress, w.cfg.TLS); err != nil {
		return err
	}
	g := grpc.NewServer(security.ServerOptions(w.cfg.TLS, nil)...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	if err := w.srv.listen(w.cfg.Address, w.cfg.WebAddress, g, mux); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), w.logger))
	w.cancel = cancel
	w.srv.serve(&w.wg, w.logger)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.loop(rctx)
	}()
	w.logger.Info("Job worker started", "address", w.Addr(), "jobMaster", w.cfg.JobMasterAddress, "slots", w.cfg.Slots, "bandwidth", w.cfg.BandwidthBytes)
	return nil
}

// Run starts the job worker and serves until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return w.Close()
}

// Addr is the RPC address being served.
func (w *Worker) Addr() string { return w.srv.addr(w.cfg.Address) }

// WebAddr is the web address being served ("" when off).
func (w *Worker) WebAddr() string { return w.srv.webAddr() }

// Close stops heartbeating, cancels running tasks and joins everything.
func (w *Worker) Close() error {
	var errs []error
	w.once.Do(func() {
		if w.cancel != nil {
			w.cancel()
		}
		errs = append(errs, w.srv.stop())
		w.wg.Wait()
		w.tasks.Wait()
		if w.jm != nil {
			errs = append(errs, w.jm.Close())
		}
		if w.fs != nil {
			errs = append(errs, w.fs.Close())
		}
	})
	return errors.Join(errs...)
}

// loop registers and heartbeats until ctx ends; tasks run in their own
// goroutines (joined by Close) under contexts derived from ctx.
func (w *Worker) loop(ctx context.Context) {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := w.beat(ctx); err != nil && ctx.Err() == nil {
			w.logger.V(1).Info("Heartbeat to the job master failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			w.mu.Lock()
			for _, cancel := range w.running {
				cancel()
			}
			w.mu.Unlock()
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

func (w *Worker) register(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := w.jm.API().RegisterJobWorker(cctx, &apiv1.RegisterJobWorkerRequest{
		Address: w.Addr(), WebAddress: w.WebAddr(), Node: w.cfg.Node, Labels: w.cfg.Labels, Slots: int32(w.cfg.Slots),
	})
	if err != nil {
		return fmt.Errorf("register with job master %s: %w", w.cfg.JobMasterAddress, meta.FromStatus(err))
	}
	w.mu.Lock()
	w.id = resp.GetWorkerId()
	w.mu.Unlock()
	w.logger.Info("Registered with the job master", "workerID", resp.GetWorkerId())
	return nil
}

// beat sends finished results and running tasks, and starts what comes back.
func (w *Worker) beat(ctx context.Context) error {
	w.mu.Lock()
	id := w.id
	w.mu.Unlock()
	if id == 0 {
		if err := w.register(ctx); err != nil {
			return err
		}
	}
	w.mu.Lock()
	req := &apiv1.JobWorkerHeartbeatRequest{WorkerId: w.id, Results: w.results}
	for tid := range w.running {
		req.RunningTaskIds = append(req.RunningTaskIds, tid)
	}
	w.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.jm.API().JobWorkerHeartbeat(cctx, req)
	cancel()
	if err != nil {
		return fmt.Errorf("heartbeat: %w", meta.FromStatus(err))
	}
	w.mu.Lock()
	w.results = w.results[len(req.GetResults()):] // acknowledged; newer ones stay
	if resp.GetRegister() {
		w.id = 0 // the job master restarted: register at the next beat
	}
	for _, tid := range resp.GetCancelTaskIds() {
		if c := w.running[tid]; c != nil {
			c()
		}
	}
	w.mu.Unlock()
	if resp.GetRegister() {
		w.wake()
	}
	for _, t := range resp.GetTasks() {
		w.startTask(ctx, t)
	}
	return nil
}

func (w *Worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Worker) startTask(ctx context.Context, t *apiv1.JobTask) {
	tctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	if _, dup := w.running[t.GetTaskId()]; dup {
		w.mu.Unlock()
		cancel()
		return
	}
	w.running[t.GetTaskId()] = cancel
	w.mu.Unlock()
	w.tasks.Add(1)
	go func() {
		defer w.tasks.Done()
		defer cancel()
		start := time.Now()
		n, err := w.exec(tctx, t)
		r := &apiv1.TaskResult{TaskId: t.GetTaskId(), JobId: t.GetJobId(), Bytes: n, DurationMs: time.Since(start).Milliseconds()}
		if err != nil {
			r.Error, r.Permanent = oneLine(err), permanent(err)
			w.logger.V(1).Info("Task failed", "job", t.GetJobId(), "task", t.GetTaskId(), "path", t.GetPath(), "err", err)
		}
		if n > 0 {
			w.bytes.WithLabelValues(typeLabel(t.GetType())).Add(float64(n))
		}
		w.mu.Lock()
		delete(w.running, t.GetTaskId())
		if ctx.Err() == nil {
			w.results = append(w.results, r)
		}
		w.mu.Unlock()
		w.wake()
	}()
}
