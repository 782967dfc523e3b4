package master

import (
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var summaryPage = template.Must(template.New("summary").Parse(`<!doctype html>
<html><head><title>Alcove master</title></head><body>
<h1>Alcove master</h1>
<table>
<tr><th align="left">Address</th><td>{{.Address}}</td></tr>
<tr><th align="left">Leader</th><td>{{.Leader}}</td></tr>
<tr><th align="left">Version</th><td>{{.Version}}</td></tr>
<tr><th align="left">Started</th><td>{{.Started}}</td></tr>
<tr><th align="left">Inodes</th><td>{{.Inodes}}</td></tr>
<tr><th align="left">Workers</th><td>{{.Live}} live, {{.Lost}} lost</td></tr>
</table>
<h2>Tiers</h2>
<table><tr><th>Tier</th><th>Capacity</th><th>Used</th></tr>
{{range .Tiers}}<tr><td>{{.Alias}}</td><td>{{.Capacity}}</td><td>{{.Used}}</td></tr>{{end}}
</table>
<h2>Mounts</h2>
<table><tr><th>Path</th><th>UFS</th><th>Read-only</th></tr>
{{range .Mounts}}<tr><td>{{.AlcovePath}}</td><td>{{.UfsUri}}</td><td>{{.ReadOnly}}</td></tr>{{end}}
</table>
<p><a href="/metrics">metrics</a></p>
</body></html>
`))

type tierRow struct {
	Alias          string
	Capacity, Used int64
}

func (m *Master) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.journal.IsLeader() {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		live, lost := m.reg.counts()
		var tiers []tierRow
		for alias, v := range m.reg.tierTotals() {
			tiers = append(tiers, tierRow{alias, v[0], v[1]})
		}
		sort.Slice(tiers, func(i, j int) bool { return tierRank(tiers[i].Alias) < tierRank(tiers[j].Alias) })
		mts, _ := m.mountTable()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = summaryPage.Execute(w, map[string]any{
			"Address": m.Addr(), "Leader": m.journal.IsLeader(), "Version": Version,
			"Started": m.started.Format(time.RFC3339), "Inodes": m.inodeCount(),
			"Live": live, "Lost": lost, "Tiers": tiers, "Mounts": mts,
		})
	})
	return mux
}
