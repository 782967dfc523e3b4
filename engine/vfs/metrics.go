package vfs

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a mount's counters (alcove_fuse_*, the names are the
// mount's). They live in a per-mount registry so several mounts (and a
// worker) can share a process.
type Metrics struct {
	Registry *prometheus.Registry

	PassthroughOpens     prometheus.Counter
	PassthroughOpenBytes prometheus.Counter
	BytesShortCircuit    prometheus.Counter
	BytesRemote          prometheus.Counter
	BytesUFS             prometheus.Counter
	BytesStage           prometheus.Counter
	BytesWritten         prometheus.Counter
	Commits              prometheus.Counter
	CommitBytes          prometheus.Counter
	OpLatency            *prometheus.HistogramVec
	OpErrors             *prometheus.CounterVec

	// ReadRequests counts READ requests that reached the daemon (counted
	// by the FUSE layer); the passthrough test asserts it stays zero for a
	// passthrough file. OpLatency and OpErrors are the FUSE layer's too.
	ReadRequests atomic.Int64
}

// NewMetrics returns the counters in a new registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "fuse", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &Metrics{
		Registry:             reg,
		PassthroughOpens:     c("passthrough_opens_total", "Opens served by kernel FUSE passthrough from the local worker's cache file."),
		PassthroughOpenBytes: c("bytes_passthrough_opened_total", "Bytes of files opened with passthrough (the kernel reads them without the daemon, so they cannot be counted per byte)."),
		BytesShortCircuit:    c("bytes_read_short_circuit_total", "Bytes the daemon read from the local worker's cache file (domain socket fd)."),
		BytesRemote:          c("bytes_read_remote_total", "Bytes the daemon read from a worker's cache over gRPC."),
		BytesUFS:             c("bytes_read_ufs_total", "Bytes the daemon read from the UFS through a worker (cache misses)."),
		BytesStage:           c("bytes_read_stage_total", "Bytes read from a local staging file (written but not yet committed)."),
		BytesWritten:         c("bytes_written_total", "Bytes written to staging files."),
		Commits:              c("commits_total", "Staged files committed to Alcove."),
		CommitBytes:          c("bytes_committed_total", "Bytes committed to Alcove from staging files."),
		OpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "fuse", Name: "op_duration_seconds",
			Help:    "Latency of FUSE operations handled by the daemon.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 4, 10),
		}, []string{"op"}),
		OpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alcove", Subsystem: "fuse", Name: "op_errors_total", Help: "FUSE operations that returned an error, by op and errno.",
		}, []string{"op", "errno"}),
	}
	reg.MustRegister(m.OpLatency, m.OpErrors)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "alcove", Subsystem: "fuse", Name: "read_requests_total",
		Help: "READ requests that reached the daemon (passthrough files send none).",
	}, func() float64 { return float64(m.ReadRequests.Load()) }))
	return m
}
