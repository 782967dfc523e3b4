package main

import (
	"github.com/spf13/cobra"

	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/extender"
)

func newExtenderCmd(g *globals) *cobra.Command {
	var cfg extender.Config
	cmd := &cobra.Command{
		Use:   "extender",
		Short: "Run the kube-scheduler extender (place pods where their data is cached)",
		Long: `Run the kube-scheduler extender: /prioritize scores nodes 0..10 by the bytes
of a pod's Alcove data cached on them; /filter (with --hard, or per pod with
the annotation alcove.io/placement: required) keeps only nodes caching at
least --min-fraction of what the best node caches. Cached bytes come from the
master's WatchNodeCache stream; while the master is unreachable the extender
answers "no opinion". See extender/README.md for the scheduler configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Handler.MinFraction < 0 || cfg.Handler.MinFraction > 1 {
				return usagef("--min-fraction %v: use a value in 0..1", cfg.Handler.MinFraction)
			}
			cfg.MasterAddresses = g.masterAddresses()
			var err error
			if cfg.TLS, err = g.tls(security.RoleNode); err != nil {
				return err
			}
			s, err := extender.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", extender.DefaultListen, "HTTP listen address")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration; outside a cluster, annotation-only mode)")
	f.BoolVar(&cfg.Handler.Hard, "hard", false, "filter every pod with Alcove data to nodes caching it (otherwise only pods annotated alcove.io/placement: required)")
	f.Float64Var(&cfg.Handler.MinFraction, "min-fraction", extender.DefaultMinFraction, "/filter keeps nodes caching at least this fraction of what the best node caches")
	f.Float64Var(&cfg.Handler.DampingPods, "damping-pods", extender.DefaultDampingPods, "halve a node's score once this many data pods were recently scored onto it (negative: no damping)")
	f.DurationVar(&cfg.Handler.HalfLife, "damping-half-life", extender.DefaultHalfLife, "half-life of the recent-pods count used for damping")
	return cmd
}
