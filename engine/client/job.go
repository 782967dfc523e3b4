package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// CacheBlockOn asks the worker at workerAddr to cache a block from the UFS
// (the job tier's load tasks: the job worker asks the worker of its node).
func (c *Client) CacheBlockOn(ctx context.Context, workerAddr string, req *apiv1.CacheBlockRequest) (*apiv1.CacheBlockResponse, error) {
	wc, err := c.workerConn(workerAddr)
	if err != nil {
		return nil, err
	}
	resp, err := wc.CacheBlock(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("cache block %d on worker %s: %w", req.GetBlockId(), workerAddr, meta.FromStatus(err))
	}
	return resp, nil
}

// LiveWorkers lists the workers that are heartbeating (cached a few seconds).
func (c *Client) LiveWorkers(ctx context.Context) ([]*apiv1.WorkerInfo, error) {
	return c.liveWorkers(ctx)
}

// JobClient talks to the job master. Safe for concurrent use.
type JobClient struct {
	addr    string
	cc      *grpc.ClientConn
	api     apiv1.JobMasterClient
	timeout time.Duration
}

// NewJobClient connects (lazily) to the job master at addr, with mTLS when
// tlsSrc is set.
func NewJobClient(addr string, tlsSrc *security.Source) (*JobClient, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		security.DialOption(tlsSrc, security.RoleJob),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("connect to job master %s: %w", addr, err)
	}
	return &JobClient{addr: addr, cc: cc, api: apiv1.NewJobMasterClient(cc), timeout: 10 * time.Second}, nil
}

// Addr is the job master's address.
func (j *JobClient) Addr() string { return j.addr }

// Close drops the connection.
func (j *JobClient) Close() error { return j.cc.Close() }

// API is the raw gRPC client (job workers register and heartbeat with it).
func (j *JobClient) API() apiv1.JobMasterClient { return j.api }

func (j *JobClient) call(ctx context.Context, what string, fn func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	if err := meta.FromStatus(fn(cctx)); err != nil {
		return fmt.Errorf("%s (job master %s; is `alcove job-master` or `alcove local` running? set --job-master or ALCOVE_JOB_MASTER): %w", what, j.addr, err)
	}
	return nil
}

// Submit starts a job and returns its id.
func (j *JobClient) Submit(ctx context.Context, spec *apiv1.JobSpec) (int64, error) {
	var id int64
	err := j.call(ctx, "submit job", func(ctx context.Context) error {
		r, err := j.api.SubmitJob(ctx, &apiv1.SubmitJobRequest{Spec: spec})
		id = r.GetJobId()
		return err
	})
	return id, err
}

// Get returns a job's state and progress.
func (j *JobClient) Get(ctx context.Context, id int64) (*apiv1.JobInfo, error) {
	var info *apiv1.JobInfo
	err := j.call(ctx, fmt.Sprintf("get job %d", id), func(ctx context.Context) error {
		r, err := j.api.GetJob(ctx, &apiv1.GetJobRequest{JobId: id})
		info = r.GetJob()
		return err
	})
	return info, err
}

// List returns running jobs (all: finished ones too).
func (j *JobClient) List(ctx context.Context, all bool) ([]*apiv1.JobInfo, error) {
	var out []*apiv1.JobInfo
	err := j.call(ctx, "list jobs", func(ctx context.Context) error {
		r, err := j.api.ListJobs(ctx, &apiv1.ListJobsRequest{All: all})
		out = r.GetJobs()
		return err
	})
	return out, err
}

// Cancel stops a job; canceling a finished job is a no-op.
func (j *JobClient) Cancel(ctx context.Context, id int64) error {
	return j.call(ctx, fmt.Sprintf("cancel job %d", id), func(ctx context.Context) error {
		_, err := j.api.CancelJob(ctx, &apiv1.CancelJobRequest{JobId: id})
		return err
	})
}

// JobFinished reports whether a job reached an end state.
func JobFinished(s apiv1.JobState) bool {
	return s == apiv1.JobState_JOB_COMPLETED || s == apiv1.JobState_JOB_FAILED || s == apiv1.JobState_JOB_CANCELED
}

// CacheBlockRequest asks for block idx of a file (as GetStatus returned it)
// to be cached from the UFS.
func CacheBlockRequest(info *apiv1.FileInfo, idx int64) *apiv1.CacheBlockRequest {
	bi, blen := blockInfo(info, idx)
	return &apiv1.CacheBlockRequest{BlockId: bi.GetBlockId(), BlockLength: blen, BlockSizeBytes: info.GetBlockSizeBytes(), Ufs: ufsSource(info, idx), BlockToken: info.GetBlockToken()}
}
