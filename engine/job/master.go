package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Default addresses (Alluxio's ports).
var (
	DefaultMasterAddress    = meta.HostPort("127.0.0.1", meta.JobMasterRPCPort)
	DefaultMasterWebAddress = meta.HostPort("0.0.0.0", meta.JobMasterWebPort)
	DefaultWorkerAddress    = meta.HostPort("127.0.0.1", meta.JobWorkerRPCPort)
	DefaultWorkerWebAddress = meta.HostPort("0.0.0.0", meta.JobWorkerWebPort)
)

// MasterConfig configures a job master.
type MasterConfig struct {
	// Dir holds the job store (Dir/jobs.db).
	Dir string
	// Address is the gRPC listen address (default DefaultMasterAddress; port 0 picks one).
	Address string
	// WebAddress serves /, /api/jobs, /metrics and /healthz; "" disables it.
	WebAddress string
	// MasterAddresses are the filesystem masters.
	MasterAddresses []string
	// WorkerTimeout: a job worker silent this long is lost and its tasks
	// are planned again elsewhere (default 10 s).
	WorkerTimeout time.Duration
	// PlanInterval is how often a running job is re-planned from the
	// filesystem's state (default 2 s; sooner when its queue runs dry).
	PlanInterval time.Duration
	// Retries is how many attempts a file gets before the job reports it
	// failed (default 3); RetryBackoff × attempt is the wait between them
	// (default 1 s).
	Retries      int
	RetryBackoff time.Duration
	// ReplicationMin (alluxio.user.file.replication.min) keeps a standing
	// REPLICATE job on / with this many copies of every block; 0: none.
	ReplicationMin int
	// TLS is the job master's certificate (role job): its gRPC server
	// requires client certificates, and it calls the masters with it.
	// nil: plaintext.
	TLS *security.Source
}

// Master is a running job master.
type Master struct {
	cfg    MasterConfig
	logger klog.Logger
	store  *store
	fs     *client.Client
	sched  *scheduler
	mx     *metrics

	srv servers

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewMaster validates cfg.
func NewMaster(cfg MasterConfig) (*Master, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: the job master needs a state directory", meta.ErrInvalidArgument)
	}
	if cfg.Address == "" {
		cfg.Address = DefaultMasterAddress
	}
	if cfg.WorkerTimeout <= 0 {
		cfg.WorkerTimeout = 10 * time.Second
	}
	if cfg.PlanInterval <= 0 {
		cfg.PlanInterval = 2 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.ReplicationMin < 0 {
		return nil, fmt.Errorf("%w: replication.min %d must not be negative", meta.ErrInvalidArgument, cfg.ReplicationMin)
	}
	return &Master{cfg: cfg}, nil
}

// Start opens the store, resumes running jobs and starts serving.
func (m *Master) Start(ctx context.Context) (err error) {
	m.logger = klog.FromContext(ctx).WithName("job-master")
	m.store, err = openStore(m.cfg.Dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.fs, err = client.New(client.Config{MasterAddresses: m.cfg.MasterAddresses, RetryTimeout: 10 * time.Second, TLS: m.cfg.TLS})
	if err != nil {
		return err
	}
	m.mx = newMetrics()
	m.sched = newScheduler(m.cfg, m.store, m.fs, m.mx, m.logger)
	if err := m.sched.resume(); err != nil {
		return err
	}
	m.mx.register(m.sched)
	g := grpc.NewServer(append(security.ServerOptions(m.cfg.TLS, nil), grpc.ChainUnaryInterceptor(m.mx.interceptor))...)
	apiv1.RegisterJobMasterServer(g, &jobServer{m: m})
	if err := m.srv.listen(m.cfg.Address, m.cfg.WebAddress, g, m.webHandler()); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), m.logger))
	m.cancel = cancel
	m.srv.serve(&m.wg, m.logger)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.sched.run(rctx)
	}()
	if m.cfg.ReplicationMin > 0 {
		if err := m.sched.ensureReplicationMin(rctx, m.cfg.ReplicationMin); err != nil {
			return err
		}
	}
	m.logger.Info("Job master started", "address", m.Addr(), "web", m.WebAddr(), "resumed", m.sched.runningCount())
	return nil
}

// Run starts the job master and serves until ctx ends.
func (m *Master) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// Addr is the RPC address being served.
func (m *Master) Addr() string { return m.srv.addr(m.cfg.Address) }

// WebAddr is the web address being served ("" when off).
func (m *Master) WebAddr() string { return m.srv.webAddr() }

// Submit starts a job (the in-process DataLoad controller uses it).
func (m *Master) Submit(ctx context.Context, spec *apiv1.JobSpec) (int64, error) {
	return m.sched.submit(ctx, spec)
}

// Close stops serving and joins every goroutine; running jobs stay in the
// store and resume on the next Start.
func (m *Master) Close() error {
	var errs []error
	m.once.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		errs = append(errs, m.srv.stop())
		m.wg.Wait()
		if m.fs != nil {
			errs = append(errs, m.fs.Close())
		}
		if m.store != nil {
			errs = append(errs, m.store.close())
		}
	})
	return errors.Join(errs...)
}

// jobServer is the JobMaster gRPC service.
type jobServer struct {
	apiv1.UnimplementedJobMasterServer
	m *Master
}

func (s *jobServer) SubmitJob(ctx context.Context, req *apiv1.SubmitJobRequest) (*apiv1.SubmitJobResponse, error) {
	id, err := s.m.sched.submit(ctx, req.GetSpec())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.SubmitJobResponse{JobId: id}, nil
}

func (s *jobServer) GetJob(_ context.Context, req *apiv1.GetJobRequest) (*apiv1.GetJobResponse, error) {
	info, err := s.m.sched.get(req.GetJobId())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.GetJobResponse{Job: info}, nil
}

func (s *jobServer) ListJobs(_ context.Context, req *apiv1.ListJobsRequest) (*apiv1.ListJobsResponse, error) {
	return &apiv1.ListJobsResponse{Jobs: s.m.sched.list(req.GetAll())}, nil
}

func (s *jobServer) CancelJob(_ context.Context, req *apiv1.CancelJobRequest) (*apiv1.CancelJobResponse, error) {
	if err := s.m.sched.cancelJob(req.GetJobId()); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CancelJobResponse{}, nil
}

func (s *jobServer) RegisterJobWorker(_ context.Context, req *apiv1.RegisterJobWorkerRequest) (*apiv1.RegisterJobWorkerResponse, error) {
	id, err := s.m.sched.registerWorker(req)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.RegisterJobWorkerResponse{WorkerId: id}, nil
}

func (s *jobServer) JobWorkerHeartbeat(_ context.Context, req *apiv1.JobWorkerHeartbeatRequest) (*apiv1.JobWorkerHeartbeatResponse, error) {
	resp, err := s.m.sched.heartbeat(req)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return resp, nil
}
