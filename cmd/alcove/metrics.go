package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// newMetricsReportCmd aggregates the alcove_* counters and gauges that the
// master and every live worker expose on their web port's /metrics.
func newMetricsReportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "metrics", Short: "Cluster metrics, summed over the master and all workers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				mi, err := c.MasterInfo(ctx)
				if err != nil {
					return err
				}
				ws, err := c.Workers(ctx)
				if err != nil {
					return err
				}
				sources := []string{}
				if mi.GetWebAddress() != "" {
					sources = append(sources, mi.GetWebAddress())
				}
				for _, w := range ws {
					if w.GetState() != apiv1.WorkerState_WORKER_LOST && w.GetWebAddress() != "" {
						sources = append(sources, w.GetWebAddress())
					}
				}
				sums := map[string]float64{}
				for _, s := range sources {
					fams, err := scrape(ctx, s)
					if err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", err)
						continue
					}
					addFamilies(sums, fams)
				}
				keys := make([]string, 0, len(sums))
				for k := range sums {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 1, 4, 2, ' ', 0)
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\n", k, formatMetric(k, sums[k]))
				}
				return tw.Flush()
			})
		},
	}
}

func scrape(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("parse metrics of %s: %w", addr, err)
	}
	return fams, nil
}

// addFamilies sums counters and gauges named alcove_*, keyed by name and labels.
func addFamilies(sums map[string]float64, fams map[string]*dto.MetricFamily) {
	for name, f := range fams {
		if !strings.HasPrefix(name, "alcove_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			key := name
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			sums[key] += v
		}
	}
}

func formatMetric(name string, v float64) string {
	if strings.Contains(name, "bytes") {
		return fmt.Sprintf("%s (%.0f)", humanSize(int64(v)), v)
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.4f", v)
}
