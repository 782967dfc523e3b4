package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/master"
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
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

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

func newMasterCmd(g *globals) *cobra.Command {
	var cfg master.Config
	var kubeAuth bool
	var host string
	var port, webPort int
	var rootOptions []string
	cmd := &cobra.Command{
		Use:   "master",
		Short: "Run a master (metadata, journal, worker registry)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := g.props
			if !cmd.Flags().Changed("dir") {
				cfg.Dir = p.String(conf.MasterJournalFolder, cfg.Dir)
			}
			if !cmd.Flags().Changed("root-ufs") {
				cfg.RootUFS = p.String(conf.MasterRootUFS, cfg.RootUFS)
			}
			if !cmd.Flags().Changed("port") {
				port = p.Int(conf.MasterRPCPort, port)
			}
			if !cmd.Flags().Changed("web-port") {
				webPort = p.Int(conf.MasterWebPort, webPort)
			}
			if !cmd.Flags().Changed("worker-timeout") {
				cfg.WorkerTimeout = p.Duration(conf.MasterWorkerTimeout, cfg.WorkerTimeout)
			}
			if cfg.RootUFS == "" {
				cfg.RootUFS = filepath.Join(cfg.Dir, "ufs")
			}
			var err error
			if cfg.RootUFSProperties, err = rootUFSOptions(g, rootOptions); err != nil {
				return err
			}
			cfg.MetadataSyncInterval = masterSyncInterval(g)
			cfg.Address = hostPort(host, port)
			cfg.WebAddress = hostPort(host, webPort)
			cfg.TokenLifetime = p.Duration(conf.SecurityTokenLifetime, 0)
			if v, ok := p.Get(conf.SecuritySuperusers); ok {
				cfg.Superusers = strings.Split(v, ",")
			}
			if v, ok := p.Get(conf.SecuritySupergroups); ok {
				cfg.SuperGroups = strings.Split(v, ",")
			}
			if kubeAuth {
				users, err := kubeTokenReviewer()
				if err != nil {
					return err
				}
				cfg.Users = users
			}
			if cfg.TLS, err = g.tls(security.RoleMaster); err != nil {
				return err
			}
			m, err := master.New(cfg)
			if err != nil {
				return err
			}
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "./alcove-data/master", "journal and metadata directory (alluxio.master.journal.folder)")
	cmd.Flags().StringVar(&cfg.RootUFS, "root-ufs", "", "UFS URI mounted at / when the namespace is new (default DIR/ufs), e.g. s3://bucket/prefix")
	cmd.Flags().StringArrayVar(&rootOptions, "root-ufs-option", nil, "root UFS option KEY=VALUE (repeatable; alluxio.master.mount.table.root.option.KEY); credentials: prefer the AWS_* environment")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "address to bind and advertise")
	cmd.Flags().IntVar(&port, "port", 19998, "RPC port")
	cmd.Flags().IntVar(&webPort, "web-port", 19999, "web UI and /metrics port")
	cmd.Flags().DurationVar(&cfg.WorkerTimeout, "worker-timeout", 10*time.Second, "mark a worker lost after this long without a heartbeat")
	cmd.Flags().BoolVar(&kubeAuth, "kube-auth", false, "accept pods' ServiceAccount tokens (audience alcove), verified by TokenReview with the in-cluster configuration")
	return cmd
}

// rootUFSOptions merges the root mount's options from the properties file
// (alluxio.master.mount.table.root.option.*) and flags (flags win).
func rootUFSOptions(g *globals, flags []string) (map[string]string, error) {
	props := g.props.WithPrefix(conf.MasterRootUFSOption)
	fromFlags, err := parseOptions("--root-ufs-option", flags)
	if err != nil {
		return nil, err
	}
	if props == nil && fromFlags != nil {
		props = map[string]string{}
	}
	maps.Copy(props, fromFlags)
	return props, nil
}

// masterSyncInterval is the master's alluxio.user.file.metadata.sync.interval.
func masterSyncInterval(g *globals) time.Duration {
	v, ok := g.props.Get(conf.UserMetadataSyncInterval)
	if !ok {
		return 0
	}
	switch d, _ := conf.ParseSyncInterval(v); {
	case d < 0:
		return 0
	case d == 0:
		return master.SyncAlways
	default:
		return d
	}
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
	cmd.Flags().IntVar(&f.port, "worker-port", 29999, "worker RPC port")
	cmd.Flags().IntVar(&f.webPort, "worker-web-port", 30000, "worker /metrics port")
	cmd.Flags().IntVar(&f.dataPort, "worker-data-port", 29998, "worker raw block data port for remote reads (0 disables; clients then use gRPC)")
	cmd.Flags().StringVar(&f.socket, "domain-socket", "", "unix socket for short-circuit reads (\"none\" disables)")
	cmd.Flags().IntVar(&f.socketGroup, "domain-socket-group", -1, "group id that may connect to the domain socket besides root and the worker's user (mode 0660; -1: the worker's group); reads also need a block token")
	cmd.Flags().StringVar(&f.memDir, "mem-dir", "", "MEM tier directory (default: on /dev/shm)")
	cmd.Flags().StringVar(&f.memSize, "mem-size", "1GB", "MEM tier quota (alluxio.worker.ramdisk.size)")
	cmd.Flags().BoolVar(&f.ramdisk, "mem-ramdisk", true, "mount a dedicated tmpfs with transparent huge pages on the MEM tier directory (needs root; without it the directory is used as it is)")
	cmd.Flags().StringArrayVar(&f.tiers, "tier", nil, "extra tier ALIAS:DIR:SIZE (repeatable), e.g. SSD:/mnt/ssd/alcove:100GB")
	cmd.Flags().IntVar(&f.asyncThreads, "async-cache-threads", 8, "bound on background block caching (alluxio.worker.network.async.cache.manager.threads.max)")
	cmd.Flags().DurationVar(&f.drainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "on SIGTERM, refuse new writes and wait this long for in-flight writes and persists before exiting (keep it under the pod's terminationGracePeriodSeconds)")
}

func (f *workerFlags) config(cmd *cobra.Command, g *globals, stateDir, masterAddr string) (worker.Config, error) {
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
		dataAddr = hostPort(f.host, f.dataPort)
	}
	return worker.Config{
		MasterAddress:     masterAddr,
		Address:           hostPort(f.host, f.port),
		WebAddress:        hostPort(f.host, f.webPort),
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
			cfg, err := f.config(cmd, g, dir, g.masterAddresses()[0])
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
