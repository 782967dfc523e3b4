package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/alcove-io/alcove/engine/blockstore"
)

// metrics live in a per-worker registry: a master and a worker can share a
// process (alcove local).
type metrics struct {
	reg               *prometheus.Registry
	bytesReadRemote   prometheus.Counter
	bytesDomainSocket prometheus.Counter
	bytesReadUFS      prometheus.Counter
	bytesWrittenCache prometheus.Counter
	bytesWrittenUFS   prometheus.Counter
	cacheHits         prometheus.Counter
	cacheMisses       prometheus.Counter
	asyncCacheDropped prometheus.Counter
	replicaBytesSent  prometheus.Counter
	rpcDuration       *prometheus.HistogramVec
}

func newMetrics(store *blockstore.Store) *metrics {
	reg := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "worker", Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		reg:               reg,
		bytesReadRemote:   f("bytes_read_remote_total", "Bytes of cached blocks streamed to clients over gRPC."),
		bytesDomainSocket: f("bytes_read_domain_socket_total", "Bytes of blocks handed to local clients over the domain socket (sum of opened block lengths)."),
		bytesReadUFS:      f("bytes_read_ufs_total", "Bytes read from under storage."),
		bytesWrittenCache: f("bytes_written_cache_total", "Bytes written into the block cache."),
		bytesWrittenUFS:   f("bytes_written_ufs_total", "Bytes written to under storage."),
		cacheHits:         f("cache_hits_total", "Block reads served from the cache."),
		cacheMisses:       f("cache_misses_total", "Block reads that missed the cache."),
		asyncCacheDropped: f("async_cache_dropped_total", "Async cache requests dropped because the queue was full."),
		replicaBytesSent:  f("replica_bytes_sent_total", "Bytes of blocks pushed to other workers as replication.durable copies."),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "worker", Name: "rpc_duration_seconds",
			Help: "Latency of worker RPCs (whole stream for streaming RPCs).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"method", "code"}),
	}
	reg.MustRegister(m.rpcDuration, collectors.NewGoCollector())
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "worker", Name: "evictions_total",
		Help: "Blocks evicted from the cache."}, func() float64 { return float64(store.Evictions()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "alcove", Subsystem: "worker", Name: "blocks_lost_total",
		Help: "Evicted blocks that were the only copy of unpersisted data."}, func() float64 { return float64(store.LostBlocks()) }))
	for i, u := range store.Usage() {
		i, labels := i, prometheus.Labels{"tier": u.Alias}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "worker", Name: "tier_capacity_bytes",
			Help: "Capacity of a cache tier.", ConstLabels: labels}, func() float64 { return float64(store.Usage()[i].CapacityBytes) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "worker", Name: "tier_used_bytes",
			Help: "Used bytes of a cache tier.", ConstLabels: labels}, func() float64 { return float64(store.Usage()[i].UsedBytes) }))
	}
	return m
}

func (m *metrics) observe(method string, start time.Time, err error) {
	m.rpcDuration.WithLabelValues(method, status.Code(err).String()).Observe(time.Since(start).Seconds())
}

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}
