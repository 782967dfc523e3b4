package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ramdisk"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/security/kube"
	"github.com/alcove-io/alcove/engine/worker"
)

// tierFlag parses --tier ALIAS:DIR:SIZE (e.g. MEM:/dev/shm/alcove:2GB).
func parseTier(s string) (blockstore.TierConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return blockstore.TierConfig{}, usagef("--tier %q: use ALIAS:DIR:SIZE, e.g. SSD:/mnt/ssd/alcove:100GB", s)
	}
	alias := strings.ToUpper(parts[0])
	if alias != "MEM" && alias != "SSD" && alias != "HDD" {
		return blockstore.TierConfig{}, usagef("--tier %q: alias must be MEM, SSD or HDD", s)
	}
	size, err := conf.ParseSize(parts[2])
	if err != nil {
		return blockstore.TierConfig{}, usagef("--tier %q: %v", s, err)
	}
	if size <= 0 {
		return blockstore.TierConfig{}, usagef("--tier %q: size must be positive, e.g. 10GB", s)
	}
	return blockstore.TierConfig{Alias: alias, Dir: parts[1], QuotaBytes: size}, nil
}

// hostPort joins a host and a port flag value.

func defaultNode() string {
	if n := os.Getenv("ALCOVE_NODE"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// socketPath keeps a unix socket path under the kernel's 108-byte limit.
func socketPath(preferred string) string {
	if len(preferred) < 100 {
		return preferred
	}
	sum := sha256.Sum256([]byte(preferred))
	return filepath.Join(os.TempDir(), "alcove-"+hex.EncodeToString(sum[:6])+".sock")
}

// memDir places the MEM tier on tmpfs (/dev/shm) when it is there.
func memDir(stateDir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		abs, _ := filepath.Abs(stateDir)
		sum := sha256.Sum256([]byte(abs))
		return filepath.Join("/dev/shm", "alcove-"+hex.EncodeToString(sum[:4]), "mem")
	}
	return filepath.Join(stateDir, "worker", "mem")
}

// workerFlags are shared by `alcove worker` and `alcove local`.
type workerFlags struct {
	host, node, socket, memDir, memSize   string
	port, webPort, dataPort, asyncThreads int
	tiers                                 []string
	ramdisk                               bool
	drainTimeout                          time.Duration
	socketGroup                           int
}

func (f *workerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.node, "node-name", defaultNode(), "node name reported for locality (Kubernetes node name; env ALCOVE_NODE)")
	cmd.Flags().IntVar(&f.port, "worker-port", meta.WorkerRPCPort, "worker RPC port")
	cmd.Flags().IntVar(&f.webPort, "worker-web-port", meta.WorkerWebPort, "worker /metrics port")
	cmd.Flags().IntVar(&f.dataPort, "worker-data-port", meta.WorkerDataPort, "worker raw block data port for remote reads (0 disables; clients then use gRPC)")
	cmd.Flags().StringVar(&f.socket, "domain-socket", "", "unix socket for short-circuit reads (\"none\" disables)")
	cmd.Flags().IntVar(&f.socketGroup, "domain-socket-group", -1, "group id that may connect to the domain socket besides root and the worker's user (mode 0660; 0 or -1: the worker's group); reads also need a block token")
	cmd.Flags().StringVar(&f.memDir, "mem-dir", "", "MEM tier directory (default: on /dev/shm)")
	cmd.Flags().StringVar(&f.memSize, "mem-size", "1GB", "MEM tier quota (alluxio.worker.ramdisk.size)")
	cmd.Flags().BoolVar(&f.ramdisk, "mem-ramdisk", true, "mount a dedicated tmpfs with transparent huge pages on the MEM tier directory (needs root; without it the directory is used as it is)")
	cmd.Flags().StringArrayVar(&f.tiers, "tier", nil, "extra tier ALIAS:DIR:SIZE (repeatable), e.g. SSD:/mnt/ssd/alcove:100GB")
	cmd.Flags().IntVar(&f.asyncThreads, "async-cache-threads", 8, "bound on background block caching (alluxio.worker.network.async.cache.manager.threads.max)")
	cmd.Flags().DurationVar(&f.drainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "on SIGTERM, refuse new writes and wait this long for in-flight writes and persists before exiting (keep it under the pod's terminationGracePeriodSeconds)")
}

func (f *workerFlags) config(cmd *cobra.Command, g *globals, stateDir string, masters []string) (worker.Config, error) {
	p := g.props
	if !cmd.Flags().Changed("worker-port") {
		f.port = p.Int(conf.WorkerRPCPort, f.port)
	}
	if !cmd.Flags().Changed("worker-web-port") {
		f.webPort = p.Int(conf.WorkerWebPort, f.webPort)
	}
	if !cmd.Flags().Changed("async-cache-threads") {
		f.asyncThreads = p.Int(conf.WorkerAsyncCacheMax, f.asyncThreads)
	}
	memSize, err := conf.ParseSize(f.memSize)
	if err != nil || memSize <= 0 {
		return worker.Config{}, usagef("--mem-size %q: give a positive size such as 1GB", f.memSize)
	}
	if !cmd.Flags().Changed("mem-size") {
		memSize = p.Size(conf.WorkerMemorySize, memSize)
	}
	if f.memDir == "" {
		f.memDir = memDir(stateDir)
	}
	tiers := []blockstore.TierConfig{{Alias: "MEM", Dir: f.memDir, QuotaBytes: memSize}}
	for _, t := range f.tiers {
		tc, err := parseTier(t)
		if err != nil {
			return worker.Config{}, err
		}
		if tc.Alias == "MEM" {
			return worker.Config{}, usagef("--tier %q: the MEM tier is set with --mem-dir and --mem-size", t)
		}
		tiers = append(tiers, tc)
	}
	socket := f.socket
	if !cmd.Flags().Changed("domain-socket") {
		socket = p.String(conf.WorkerDomainSocket, filepath.Join(stateDir, "worker", "domain.sock"))
	}
	if socket == "none" {
		socket = ""
	} else if socket != "" {
		socket = socketPath(socket)
		if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
			return worker.Config{}, fmt.Errorf("create domain socket directory: %w", err)
		}
	}
	dataAddr := ""
	if f.dataPort > 0 {
		dataAddr = meta.HostPort(f.host, f.dataPort)
	}
	return worker.Config{
		MasterAddresses:   masters,
		Address:           meta.HostPort(f.host, f.port),
		WebAddress:        meta.HostPort(f.host, f.webPort),
		DataAddress:       dataAddr,
		DomainSocket:      socket,
		Node:              f.node,
		Tiers:             tiers,
		Ramdisk:           f.ramdisk,
		AsyncCacheThreads: f.asyncThreads,
		DrainTimeout:      f.drainTimeout,
		DomainSocketGroup: f.socketGroup,
	}, nil
}

func newWorkerCmd(g *globals) *cobra.Command {
	var f workerFlags
	var dir string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker (tiered block cache, short-circuit socket)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd, g, dir, g.masterAddresses())
			if err != nil {
				return err
			}
			if cfg.TLS, err = g.tls(security.RoleWorker); err != nil {
				return err
			}
			w, err := worker.New(cfg)
			if err != nil {
				return err
			}
			return w.Run(cmd.Context())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.host, "host", "127.0.0.1", "address to bind and advertise")
	cmd.Flags().StringVar(&dir, "dir", "./alcove-data", "state directory (domain socket)")
	return cmd
}

func newFormatCmd(g *globals) *cobra.Command {
	var dir, mem string
	cmd := &cobra.Command{
		Use:   "format",
		Short: "Erase the master's journal and metadata and the worker cache under --dir (the UFS is kept); the next master mints a new cluster id, so workers elsewhere drop their caches too",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mem == "" {
				mem = memDir(dir)
			}
			// Workers leave their ramdisk mounted (their cache outlives
			// them); formatting is what unmounts it.
			if err := ramdisk.UnmountAt(mem); err != nil {
				return fmt.Errorf("format: %w", err)
			}
			for _, d := range []string{filepath.Join(dir, "master"), filepath.Join(dir, "worker"), filepath.Dir(memDir(dir)), mem} {
				if err := os.RemoveAll(d); err != nil {
					return fmt.Errorf("format %s: %w", d, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Formatted %s\n", d)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./alcove-data", "state directory of `alcove local`")
	cmd.Flags().StringVar(&mem, "mem-dir", "", "MEM tier directory, when the worker was given --mem-dir (its ramdisk is unmounted, its cache erased)")
	return cmd
}

// kubeTokenReviewer verifies ServiceAccount tokens with the in-cluster
// Kubernetes API.
func kubeTokenReviewer() (*kube.TokenReviewer, error) {
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("--kube-auth: in-cluster Kubernetes configuration: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--kube-auth: create Kubernetes client: %w", err)
	}
	return kube.NewTokenReviewer(cs, 0), nil
}
