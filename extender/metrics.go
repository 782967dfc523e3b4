package extender

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/alcove-io/alcove/extender/locality"
)

// metrics is the extender's own Prometheus registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// indexStats is what the metrics read from the locality index.
type indexStats interface {
	Stats() locality.Stats
}

func newMetrics(idx indexStats) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alcove", Subsystem: "extender", Name: "requests_total",
			Help: "Extender requests by route and outcome (scored, no_data, no_index, error, ...).",
		}, []string{"route", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "alcove", Subsystem: "extender", Name: "request_duration_seconds",
			Help:    "Latency of extender requests.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 12),
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency, collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "extender", Name: "index_synced",
			Help: "1 while the locality index mirrors the master's stream."}, func() float64 {
			if idx.Stats().Synced {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "alcove", Subsystem: "extender", Name: "index_entries",
			Help: "(node, path prefix) entries in the locality index."}, func() float64 { return float64(idx.Stats().Entries) }),
	)
	return m
}
