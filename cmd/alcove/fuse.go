package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/fuse"
	"github.com/alcove-io/alcove/engine/meta"
)

// fuseFlags are the flags of `alcove fuse` (and `alcove local --fuse-mount`).
type fuseFlags struct {
	mountPoint     string
	path           string
	writeType      string
	stageDir       string
	handoverSocket string
	takeover       string
	noPassthrough  bool
	noAtime        bool
	attrTimeout    time.Duration
	metricsAddress string
	debug          bool
	node           string
	readType       string
	replication    int
}

func (f *fuseFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.path, "path", "/", "Alcove path shown at the mount point")
	fl.StringVar(&f.writeType, "write-type", "", "write type of files written through the mount: MUST_CACHE, CACHE_THROUGH, THROUGH, ASYNC_THROUGH (default: alluxio.user.file.writetype.default, else ASYNC_THROUGH)")
	fl.StringVar(&f.stageDir, "stage-dir", "", "local directory for files being written (default $TMPDIR/alcove-fuse-stage)")
	fl.StringVar(&f.handoverSocket, "handover-socket", "", "unix socket on which this daemon hands the mount to a successor (default: derived from the mount point under $TMPDIR; \"none\" disables)")
	fl.BoolVar(&f.noPassthrough, "no-passthrough", false, "serve every read through the daemon (no kernel passthrough)")
	fl.BoolVar(&f.noAtime, "noatime", false, "reads never update atime (default: relatime, at most one metadata update per change of a file or per day)")
	fl.DurationVar(&f.attrTimeout, "attr-timeout", time.Second, "how long the kernel caches names and attributes")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "HOST:PORT serving the mount's Prometheus /metrics (default: off)")
	fl.BoolVar(&f.debug, "fuse-debug", false, "log every FUSE request")
	fl.StringVar(&f.node, "node-name", defaultNode(), "this node's name: blocks cached by its worker are read by passthrough / short-circuit (env ALCOVE_NODE)")
	fl.StringVar(&f.readType, "read-type", "", "CACHE, CACHE_PROMOTE or NO_CACHE (default: alluxio.user.file.readtype.default, else CACHE)")
	fl.IntVar(&f.replication, "replication-durable", 0, "copies of an ASYNC_THROUGH file's blocks on distinct workers before a write is acknowledged (default: alluxio.user.file.replication.durable, else 1)")
}

// defaultHandoverSocket derives the handover socket from the mount point,
// so a successor started with only --takeover-of MOUNTPOINT finds it.
func defaultHandoverSocket(mountPoint string) string {
	abs, _ := filepath.Abs(mountPoint)
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), "alcove-fuse-"+hex.EncodeToString(sum[:6])+".sock")
}

// fuseConfig builds the mount configuration; the caller owns c.
func (f *fuseFlags) fuseConfig(c *client.Client) (fuse.Config, error) {
	cfg := fuse.Config{
		MountPoint: f.mountPoint, Root: f.path, Client: c, StageDir: f.stageDir,
		DisablePassthrough: f.noPassthrough, NoAtime: f.noAtime, AttrTimeout: f.attrTimeout, EntryTimeout: f.attrTimeout,
		Debug: f.debug,
	}
	if f.writeType != "" {
		wt, err := meta.ParseWriteType(f.writeType)
		if err != nil {
			return cfg, usagef("--write-type: %v", err)
		}
		cfg.WriteType = wt
	}
	switch f.handoverSocket {
	case "none":
	case "":
		if f.mountPoint != "" {
			cfg.HandoverSocket = defaultHandoverSocket(f.mountPoint)
		}
	default:
		cfg.HandoverSocket = f.handoverSocket
	}
	return cfg, nil
}

// startFuse mounts (or takes over) and serves metrics; stop with Unmount.
func startFuse(ctx context.Context, f *fuseFlags, c *client.Client) (*fuse.Server, error) {
	cfg, err := f.fuseConfig(c)
	if err != nil {
		return nil, err
	}
	var srv *fuse.Server
	if f.takeover != "" {
		srv, err = fuse.Takeover(ctx, cfg, f.takeover)
	} else {
		srv, err = fuse.Mount(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	if f.metricsAddress != "" {
		l, err := net.Listen("tcp", f.metricsAddress)
		if err != nil {
			srv.Unmount()
			return nil, fmt.Errorf("listen for metrics on %s: %w", f.metricsAddress, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(srv.Registry(), promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(l)
		go func() { srv.Wait(); hs.Close() }()
	}
	return srv, nil
}

func newFuseCmd(g *globals) *cobra.Command {
	var f fuseFlags
	cmd := &cobra.Command{
		Use:   "fuse",
		Short: "Mount Alcove as a POSIX filesystem (FUSE daemon)",
		Long: `Mounts an Alcove path at --mount-point and serves it until the mount is
unmounted or the process is stopped (SIGINT/SIGTERM unmount it).

Files cached by the local worker are read by the kernel through FUSE
passthrough; writes (including append, random writes and truncate) are
staged locally and committed on close/fsync.

Live upgrade: a running daemon listens on --handover-socket. Start the new
binary with --takeover SOCKET: it receives the live /dev/fuse connection and
the open-file table, the old daemon exits, and open files keep working.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.mountPoint == "" && f.takeover == "" {
				return usagef("--mount-point is required (or --takeover SOCKET)")
			}
			ccfg, err := g.clientConfig()
			if err != nil {
				return err
			}
			ccfg.Node = f.node
			if f.readType != "" {
				if ccfg.ReadType, err = readTypeFlag(f.readType); err != nil {
					return err
				}
			}
			switch {
			case f.replication < 0:
				return usagef("--replication-durable %d: use a positive number of copies", f.replication)
			case f.replication > 0:
				ccfg.ReplicationDurable = int32(f.replication)
			}
			c, err := client.New(ccfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			srv, err := startFuse(ctx, &f, c)
			if err != nil {
				c.Close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Alcove %s mounted at %s\n", f.path, srv.MountPoint())
			waitErr := make(chan error, 1)
			go func() { waitErr <- srv.Wait() }()
			select {
			case err := <-waitErr:
				if errors.Is(err, fuse.ErrHandedOver) {
					// The successor serves the mount; leave it mounted
					// and exit now: it waits for this process to go.
					klog.InfoS("Handed the mount over; exiting")
					os.Exit(0)
				}
				c.Close()
				return err
			case <-ctx.Done():
				klog.InfoS("Unmounting", "mountPoint", srv.MountPoint())
				err := srv.Unmount()
				c.Close()
				return err
			}
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.mountPoint, "mount-point", "", "local directory to mount on")
	cmd.Flags().StringVar(&f.takeover, "takeover", "", "take a live mount over from the daemon listening on this handover socket")
	return cmd
}
