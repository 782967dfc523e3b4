package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/alcove-io/alcove/csi"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

func newCSICmd(g *globals) *cobra.Command {
	var cfg csi.Config
	var mode string
	cmd := &cobra.Command{
		Use:   "csi",
		Short: "Run the CSI driver (csi.alcove.io): controller, node or both",
		Long: `Serves the CSI identity, controller and/or node services on a unix socket.
The controller provisions a namespace directory per volume (or binds a path, or
mounts a UFS, per StorageClass parameters). The node service stages one FUSE
daemon (alcove fuse, a process of its own that outlives this one) per volume
per node and bind-mounts it into pods, registers itself with kubelet, and
restores mounts whose FUSE daemon died.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Mode = csi.Mode(mode)
			cfg.Version = version
			cfg.Node.MasterAddresses = g.masterAddresses()
			ccfg, err := g.clientConfig()
			if err != nil {
				return err
			}
			ccfg.Node = cfg.NodeID
			c, err := client.New(ccfg)
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := csi.New(cfg, c)
			if err != nil {
				return usageError{err}
			}
			return d.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Endpoint, "endpoint", "unix:///var/lib/kubelet/plugins/csi.alcove.io/csi.sock", "CSI socket")
	f.StringVar(&cfg.NodeID, "node-id", defaultNode(), "this node's name (Kubernetes node name)")
	f.StringVar(&mode, "mode", "all", "services to serve: controller, node or all")
	f.StringVar(&cfg.VolumeRoot, "volume-root", meta.VolumesRoot, "namespace directory under which CreateVolume makes volumes")
	f.StringSliceVar(&cfg.AllowedUFS, "allowed-ufs", nil, "UFS URI prefixes StorageClasses may mount with the ufs parameter (local file:// paths need one)")
	f.StringVar(&cfg.Node.StateDir, "state-dir", "/var/lib/alcove/csi", "node state: staged volumes and FUSE daemon logs")
	f.StringVar(&cfg.Node.DomainSocketDir, "domain-socket-dir", "", "the local worker's domain-socket directory, published by the inline domain-socket volume")
	f.StringVar(&cfg.Node.KubeletDir, "kubelet-dir", "", "kubelet root directory; when set, register with kubelet through <dir>/plugins_registry")
	f.StringVar(&cfg.Node.KubeletEndpoint, "kubelet-endpoint", "", "the CSI socket path as kubelet sees it (default: the endpoint's path)")
	f.DurationVar(&cfg.Node.CheckInterval, "check-interval", 5*time.Second, "how often staged FUSE mounts are checked and restored")
	f.StringArrayVar(&cfg.Node.FuseArgs, "fuse-arg", nil, "extra argument for the FUSE daemons (repeatable)")
	f.StringVar(&cfg.Node.FuseCgroup, "fuse-cgroup", "", "move FUSE daemons to this cgroup (e.g. /alcove-fuse) so they outlive the node plugin's pod (needs hostPID and the host's cgroup fs)")
	f.StringVar(&cfg.Node.CgroupRoot, "cgroup-root", "/sys/fs/cgroup", "where the host's cgroup hierarchies are mounted (for --fuse-cgroup)")
	return cmd
}
