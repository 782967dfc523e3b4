package master

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics is the master's own Prometheus registry (not the global one, so a
// master and a worker can share a process).
type metrics struct {
	reg *prometheus.Registry
	rpc *prometheus.HistogramVec
}

func newMetrics(m *Master) *metrics {
	reg := prometheus.NewRegistry()
	mt := &metrics{
		reg: reg,
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "master", Name: "rpc_duration_seconds",
			Help:    "Latency of master gRPC calls.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method", "code"}),
	}
	reg.MustRegister(mt.rpc,
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "master", Name: "inodes",
			Help: "Number of inodes (files and directories)."}, func() float64 { return float64(m.inodeCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "master", Name: "workers_live",
			Help: "Workers heartbeating."}, func() float64 { l, _ := m.reg.counts(); return float64(l) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "master", Name: "workers_lost",
			Help: "Workers declared lost."}, func() float64 { _, l := m.reg.counts(); return float64(l) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "master", Name: "leader",
			Help: "1 while this master leads the journal group and serves."}, func() float64 {
			if m.Serving() {
				return 1
			}
			return 0
		}),
		&clusterCollector{m: m},
	)
	return mt
}

// Registry is the master's Prometheus registry (its RPC counts and
// latencies; benchmarks count the calls an operation costs).
func (m *Master) Registry() *prometheus.Registry { return m.metrics.reg }

func (mt *metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	mt.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

var (
	descTierCapacity = prometheus.NewDesc("alcove_master_tier_capacity_bytes", "Cache capacity of live workers, per tier.", []string{"tier"}, nil)
	descTierUsed     = prometheus.NewDesc("alcove_master_tier_used_bytes", "Cache bytes used on live workers, per tier.", []string{"tier"}, nil)
	descNodeCached   = prometheus.NewDesc("alcove_master_node_cached_bytes", "Bytes of blocks cached per node.", []string{"node"}, nil)
)

// clusterCollector reports tier and node totals computed at scrape time.
type clusterCollector struct{ m *Master }

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTierCapacity
	ch <- descTierUsed
	ch <- descNodeCached
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	for tier, v := range c.m.reg.tierTotals() {
		ch <- prometheus.MustNewConstMetric(descTierCapacity, prometheus.GaugeValue, float64(v[0]), tier)
		ch <- prometheus.MustNewConstMetric(descTierUsed, prometheus.GaugeValue, float64(v[1]), tier)
	}
	for node, b := range c.m.reg.nodeCachedBytes() {
		ch <- prometheus.MustNewConstMetric(descNodeCached, prometheus.GaugeValue, float64(b), node)
	}
}
