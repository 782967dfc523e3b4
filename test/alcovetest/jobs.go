package alcovetest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/job"
)

// Jobs is the job tier of a Cluster: a job master and a job worker per node.
type Jobs struct {
	t       testing.TB
	c       *Cluster
	dir     string
	opts    JobOptions
	Addr    string
	Master  *job.Master
	Workers map[string]*job.Worker
	Client  *client.JobClient
}

// JobOptions tune StartJobs; zero values take fast test defaults.
type JobOptions struct {
	BandwidthBytes int64 // per job worker
	Slots          int
	ReplicationMin int
}

// UFS is the directory mounted at /.
func (c *Cluster) UFS() string { return c.ufs }

// StartJobs runs a job master and one job worker per node of the cluster
// (heartbeats every 50 ms, a job worker lost after 1 s, plans every 200 ms).
func (c *Cluster) StartJobs(opts JobOptions) *Jobs {
	c.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	j := &Jobs{t: c.t, c: c, dir: filepath.Join(c.t.TempDir(), "job"), opts: opts, Addr: addr, Workers: map[string]*job.Worker{}}
	j.StartMaster()
	for n := range c.Workers {
		j.StartWorker(n)
	}
	jc, err := client.NewJobClient(addr, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	j.Client = jc
	c.t.Cleanup(j.Close)
	return j
}

// StartMaster (re)starts the job master on the same directory and address.
func (j *Jobs) StartMaster() {
	j.t.Helper()
	var err error
	for range 50 { // the port may linger briefly after a restart
		var m *job.Master
		m, err = job.NewMaster(job.MasterConfig{Dir: j.dir, Address: j.Addr, MasterAddresses: []string{j.c.MasterAddr},
			WorkerTimeout: time.Second, PlanInterval: 200 * time.Millisecond, RetryBackoff: 100 * time.Millisecond, ReplicationMin: j.opts.ReplicationMin})
		if err != nil {
			j.t.Fatal(err)
		}
		if err = m.Start(context.Background()); err == nil {
			j.Master = m
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.t.Fatal(err)
}

// StopMaster closes the job master (job workers keep trying to reach it).
func (j *Jobs) StopMaster() {
	if j.Master != nil {
		if err := j.Master.Close(); err != nil {
			j.t.Error(err)
		}
		j.Master = nil
	}
}

// StartWorker starts the job worker of node.
func (j *Jobs) StartWorker(node string) {
	j.t.Helper()
	w, err := job.NewWorker(job.WorkerConfig{JobMasterAddress: j.Addr, MasterAddresses: []string{j.c.MasterAddr}, Node: node,
		Address: "127.0.0.1:0", Slots: j.opts.Slots, BandwidthBytes: j.opts.BandwidthBytes, HeartbeatInterval: 50 * time.Millisecond,
		Labels: map[string]string{"node": node}})
	if err != nil {
		j.t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		j.t.Fatal(err)
	}
	j.Workers[node] = w
}

// StopWorker closes the job worker of node.
func (j *Jobs) StopWorker(node string) {
	if w := j.Workers[node]; w != nil {
		if err := w.Close(); err != nil {
			j.t.Error(err)
		}
		delete(j.Workers, node)
	}
}

// Wait polls job id until it ends or timeout passes, and returns its last state.
func (j *Jobs) Wait(id int64, timeout time.Duration) *apiv1.JobInfo {
	j.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info, err := j.Client.Get(context.Background(), id)
		if err == nil && client.JobFinished(info.GetState()) {
			return info
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("job %d not finished after %v: %v (last error %v)", id, timeout, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the job tier.
func (j *Jobs) Close() {
	for n := range j.Workers {
		j.StopWorker(n)
	}
	j.StopMaster()
	if j.Client != nil {
		j.Client.Close()
		j.Client = nil
	}
}
