package worker

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (w *Worker) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(w.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte("ok\n"))
	})
	return mux
}
