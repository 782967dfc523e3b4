package fuse

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics live in a per-mount registry so several mounts (and a worker)
// can share a process.
type metrics struct {
	reg *prometheus.Registry

	passthroughOpens     prometheus.Counter
	passthroughOpenBytes prometheus.Counter
	bytesShortCircuit    prometheus.Counter
	bytesRemote          prometheus.Counter
	bytesUFS             prometheus.Counter
	bytesStage           prometheus.Counter
	bytesWritten         prometheus.Counter
	commits              prometheus.Counter
	commitBytes          prometheus.Counter
	opLatency            *prometheus.HistogramVec
	opErrors             *prometheus.CounterVec

	// readRequests counts READ requests that reached the daemon; the
	// passthrough test asserts it stays zero for a passthrough file.
	readRequests atomic.Int64
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "fuse", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &metrics{
		reg:                  reg,
		passthroughOpens:     c("passthrough_opens_total", "Opens served by kernel FUSE passthrough from the local worker's cache file."),
		passthroughOpenBytes: c("bytes_passthrough_opened_total", "Bytes of files opened with passthrough (the kernel reads them without the daemon, so they cannot be counted per byte)."),
		bytesShortCircuit:    c("bytes_read_short_circuit_total", "Bytes the daemon read from the local worker's cache file (domain socket fd)."),
		bytesRemote:          c("bytes_read_remote_total", "Bytes the daemon read from a worker's cache over gRPC."),
		bytesUFS:             c("bytes_read_ufs_total", "Bytes the daemon read from the UFS through a worker (cache misses)."),
		bytesStage:           c("bytes_read_stage_total", "Bytes read from a local staging file (written but not yet committed)."),
		bytesWritten:         c("bytes_written_total", "Bytes written to staging files."),
		commits:              c("commits_total", "Staged files committed to Alcove."),
		commitBytes:          c("bytes_committed_total", "Bytes committed to Alcove from staging files."),
		opLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "fuse", Name: "op_duration_seconds",
			Help:    "Latency of FUSE operations handled by the daemon.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 4, 10),
		}, []string{"op"}),
		opErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alcove", Subsystem: "fuse", Name: "op_errors_total", Help: "FUSE operations that returned an error, by op and errno.",
		}, []string{"op", "errno"}),
	}
	reg.MustRegister(m.opLatency, m.opErrors)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "alcove", Subsystem: "fuse", Name: "read_requests_total",
		Help: "READ requests that reached the daemon (passthrough files send none).",
	}, func() float64 { return float64(m.readRequests.Load()) }))
	return m
}
