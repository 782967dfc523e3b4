package job

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

var jobsPage = template.Must(template.New("jobs").Parse(`<!doctype html>
<html><head><title>Alcove job master</title><meta http-equiv="refresh" content="5"></head><body>
<h1>Alcove job master</h1>
<p>{{.Workers}} job worker(s). <a href="/api/jobs">JSON</a> · <a href="/metrics">metrics</a></p>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>ID</th><th>Type</th><th>Path</th><th>State</th><th>Progress</th><th>Files</th><th>Bytes</th><th>Failed</th><th>Started</th><th>Message</th></tr>
{{range .Jobs}}<tr><td>{{.ID}}</td><td>{{.Type}}</td><td>{{.Path}}</td><td>{{.State}}</td>
<td><progress max="100" value="{{.Percent}}"></progress> {{.Percent}}%</td><td>{{.Files}}</td><td>{{.Bytes}}</td><td>{{.Failed}}</td><td>{{.Started}}</td><td>{{.Message}}</td></tr>
{{end}}</table>
</body></html>
`))

type jobRow struct {
	ID                                       int64
	Type, Path, State, Files, Bytes, Started string
	Message                                  string
	Percent, Failed                          int
}

func (m *Master) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.mx.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/api/jobs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var out []json.RawMessage
		for _, j := range m.sched.list(true) {
			b, _ := protojson.Marshal(j)
			out = append(out, b)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"jobs": out})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		jobs := m.sched.list(true)
		rows := make([]jobRow, 0, len(jobs))
		for i := len(jobs) - 1; i >= 0; i-- { // newest first
			rows = append(rows, rowOf(jobs[i]))
		}
		m.sched.mu.Lock()
		workers := len(m.sched.workers)
		m.sched.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = jobsPage.Execute(w, map[string]any{"Jobs": rows, "Workers": workers})
	})
	return mux
}

func rowOf(j *apiv1.JobInfo) jobRow {
	path := j.GetSpec().GetPath()
	if d := j.GetSpec().GetDst(); d != "" {
		path += " → " + d
	}
	return jobRow{
		ID: j.GetId(), Type: strings.ToLower(j.GetSpec().GetType().String()), Path: path, State: StateName(j.GetState()),
		Percent: int(j.GetPercent()), Files: fmtCount(j.GetFilesDone(), j.GetFilesTotal()),
		Bytes: fmtCount(j.GetBytesDone(), j.GetBytesTotal()), Failed: len(j.GetFailed()),
		Started: time.UnixMilli(j.GetCreateTimeMs()).UTC().Format(time.DateTime), Message: j.GetMessage(),
	}
}

func fmtCount(done, total int64) string {
	return strconv.FormatInt(done, 10) + " / " + strconv.FormatInt(total, 10)
}
