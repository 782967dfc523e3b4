package job

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// metrics is the job master's own Prometheus registry.
type metrics struct {
	reg      *prometheus.Registry
	rpc      *prometheus.HistogramVec
	tasks    *prometheus.CounterVec
	taskTime *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		reg: prometheus.NewRegistry(),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "job_master", Name: "rpc_duration_seconds",
			Help: "Latency of job master gRPC calls.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method", "code"}),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alcove", Subsystem: "job", Name: "tasks_total",
			Help: "Tasks finished, by job type and result (ok, failed).",
		}, []string{"type", "result"}),
		taskTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "job", Name: "task_duration_seconds",
			Help: "How long tasks took on the job workers, by job type.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"type"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alcove", Subsystem: "job", Name: "bytes_total",
			Help: "Bytes the job tier moved: loaded into the cache (load, replicate) or copied (copy, move).",
		}, []string{"type"}),
	}
}

var descJobs = prometheus.NewDesc("alcove_job_jobs", "Jobs known to the job master, by state.", []string{"state"}, nil)
var descWorkers = prometheus.NewDesc("alcove_job_workers", "Job workers heartbeating.", nil, nil)

// register adds the collectors that read the scheduler at scrape time.
func (mt *metrics) register(s *scheduler) {
	mt.reg.MustRegister(mt.rpc, mt.tasks, mt.taskTime, mt.bytes, collectors.NewGoCollector(), &schedCollector{s: s})
}

func typeLabel(t apiv1.JobType) string { return strings.ToLower(t.String()) }

func (mt *metrics) task(t apiv1.JobType, r *apiv1.TaskResult) {
	result := "ok"
	if r.GetError() != "" {
		result = "failed"
	}
	mt.tasks.WithLabelValues(typeLabel(t), result).Inc()
	mt.taskTime.WithLabelValues(typeLabel(t)).Observe((time.Duration(r.GetDurationMs()) * time.Millisecond).Seconds())
	if r.GetBytes() > 0 {
		mt.bytes.WithLabelValues(typeLabel(t)).Add(float64(r.GetBytes()))
	}
}

func (mt *metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	mt.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

type schedCollector struct{ s *scheduler }

func (c *schedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJobs
	ch <- descWorkers
}

func (c *schedCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[apiv1.JobState]int{}
	c.s.mu.Lock()
	for _, j := range c.s.jobs {
		counts[j.info.GetState()]++
	}
	workers := len(c.s.workers)
	c.s.mu.Unlock()
	for _, st := range []apiv1.JobState{apiv1.JobState_JOB_RUNNING, apiv1.JobState_JOB_COMPLETED, apiv1.JobState_JOB_FAILED, apiv1.JobState_JOB_CANCELED} {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(counts[st]), StateName(st))
	}
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(workers))
}

// StateName is a job state as people read it (RUNNING, COMPLETED, ...).
func StateName(s apiv1.JobState) string { return strings.TrimPrefix(s.String(), "JOB_") }
