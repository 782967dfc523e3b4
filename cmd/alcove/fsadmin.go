package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

func newFsadminCmd(g *globals) *cobra.Command {
	admin := &cobra.Command{Use: "fsadmin", Short: "Administrative reports and operations"}
	report := &cobra.Command{Use: "report", Short: "Cluster reports (capacity, summary, metrics)"}
	report.AddCommand(
		&cobra.Command{
			Use: "capacity", Short: "Capacity and usage of every worker, per tier", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
					ws, err := c.Workers(ctx)
					if err != nil {
						return err
					}
					return printCapacity(cmd.OutOrStdout(), ws)
				})
			},
		},
		&cobra.Command{
			Use: "summary", Short: "Master and cluster summary", Args: cobra.NoArgs,
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
					return printSummary(cmd.OutOrStdout(), mi, ws)
				})
			},
		},
		newMetricsReportCmd(g),
	)
	journal := &cobra.Command{Use: "journal", Short: "Journal operations"}
	journal.AddCommand(&cobra.Command{
		Use: "checkpoint", Short: "Snapshot the leader's journal now", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				idx, err := c.Checkpoint(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Successfully took a checkpoint at journal index %d\n", idx)
				return nil
			})
		},
	})
	journal.AddCommand(newQuorumCmd(g))
	admin.AddCommand(report, journal)
	return admin
}

// tierTotals sums capacity and usage per tier alias, in tier order.
func tierTotals(ws []*apiv1.WorkerInfo) (aliases []string, capacity, used map[string]int64) {
	capacity, used = map[string]int64{}, map[string]int64{}
	for _, w := range ws {
		if w.GetState() == apiv1.WorkerState_WORKER_LOST {
			continue
		}
		for _, t := range w.GetTiers() {
			if _, ok := capacity[t.GetAlias()]; !ok {
				aliases = append(aliases, t.GetAlias())
			}
			capacity[t.GetAlias()] += t.GetCapacityBytes()
			used[t.GetAlias()] += t.GetUsedBytes()
		}
	}
	rank := map[string]int{}
	for i, a := range meta.TierOrder {
		rank[a] = i + 1
	}
	sort.SliceStable(aliases, func(i, j int) bool { return rank[aliases[i]] < rank[aliases[j]] })
	return aliases, capacity, used
}

// printTierBlock prints total and used capacity with a line per tier, as
// both capacity and summary reports show them, and returns the totals.
func printTierBlock(out io.Writer, ws []*apiv1.WorkerInfo) (aliases []string, totalCap, totalUsed int64) {
	aliases, capacity, used := tierTotals(ws)
	for _, a := range aliases {
		totalCap += capacity[a]
		totalUsed += used[a]
	}
	fmt.Fprintf(out, "    Total Capacity: %s\n", humanSize(totalCap))
	for _, a := range aliases {
		fmt.Fprintf(out, "        Tier: %s  Size: %s\n", a, humanSize(capacity[a]))
	}
	fmt.Fprintf(out, "    Used Capacity: %s\n", humanSize(totalUsed))
	for _, a := range aliases {
		fmt.Fprintf(out, "        Tier: %s  Size: %s\n", a, humanSize(used[a]))
	}
	return aliases, totalCap, totalUsed
}

func pct(part, whole int64) int64 {
	if whole == 0 {
		return 0
	}
	return part * 100 / whole
}

func printCapacity(out io.Writer, ws []*apiv1.WorkerInfo) error {
	fmt.Fprintln(out, "Capacity information for all workers:")
	aliases, totalCap, totalUsed := printTierBlock(out, ws)
	fmt.Fprintf(out, "    Used Percentage: %d%%\n", pct(totalUsed, totalCap))
	fmt.Fprintf(out, "    Free Percentage: %d%%\n\n", 100-pct(totalUsed, totalCap))
	tw := tabwriter.NewWriter(out, 1, 4, 3, ' ', 0)
	fmt.Fprint(tw, "Worker Name\tNode\tState\tLast Heartbeat\tStorage")
	for _, a := range aliases {
		fmt.Fprintf(tw, "\t%s", a)
	}
	fmt.Fprintln(tw)
	for _, w := range ws {
		caps, useds := map[string]int64{}, map[string]int64{}
		var wc, wu int64
		for _, t := range w.GetTiers() {
			caps[t.GetAlias()], useds[t.GetAlias()] = t.GetCapacityBytes(), t.GetUsedBytes()
			wc += t.GetCapacityBytes()
			wu += t.GetUsedBytes()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%ds ago\tcapacity %s", w.GetAddress(), w.GetNode(), strings.TrimPrefix(w.GetState().String(), "WORKER_"), w.GetLastContactMs()/1000, humanSize(wc))
		for _, a := range aliases {
			fmt.Fprintf(tw, "\t%s", humanSize(caps[a]))
		}
		fmt.Fprintf(tw, "\n\t\t\t\tused %s (%d%%)", humanSize(wu), pct(wu, wc))
		for _, a := range aliases {
			fmt.Fprintf(tw, "\t%s", humanSize(useds[a]))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func printSummary(out io.Writer, mi *apiv1.GetMasterInfoResponse, ws []*apiv1.WorkerInfo) error {
	fmt.Fprintln(out, "Alcove cluster summary:")
	fmt.Fprintf(out, "    Master Address: %s\n", mi.GetLeaderAddress())
	fmt.Fprintf(out, "    Web Address: %s\n", mi.GetWebAddress())
	fmt.Fprintf(out, "    Started: %s\n", msTime(mi.GetStartTimeMs()))
	fmt.Fprintf(out, "    Uptime: %s\n", since(mi.GetStartTimeMs()))
	fmt.Fprintf(out, "    Version: %s\n", mi.GetVersion())
	fmt.Fprintf(out, "    Journal: %s (last index %d)\n", mi.GetJournalDir(), mi.GetJournalLastIndex())
	fmt.Fprintf(out, "    Inodes: %d\n", mi.GetInodeCount())
	fmt.Fprintf(out, "    Live Workers: %d\n", mi.GetLiveWorkers())
	fmt.Fprintf(out, "    Lost Workers: %d\n", mi.GetLostWorkers())
	_, totalCap, totalUsed := printTierBlock(out, ws)
	fmt.Fprintf(out, "    Free Capacity: %s\n", humanSize(totalCap-totalUsed))
	return nil
}
