package main

import (
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/gctune"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

func newMasterCmd(g *globals) *cobra.Command {
	var cfg master.Config
	var kubeAuth bool
	var host, peers, journalBind string
	var port, webPort, journalPort int
	var rootOptions []string
	var gcFloor string
	cmd := &cobra.Command{
		Use:   "master",
		Short: "Run a master (metadata, journal, worker registry); with --journal-peers one member of an HA group",
		Long: `Runs a master. Alone (no --journal-peers) it leads its own journal. With
--journal-peers it is one member of a raft group: list every member (this one
included) as ID=HOST:PORT of its journal port, the same list on every member.
The elected leader serves; standbys answer clients with the leader's address.
Run 3 (or 5) members so the group survives the loss of 1 (or 2).`,
		Args: cobra.NoArgs,
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
			if !cmd.Flags().Changed("journal-port") {
				journalPort = p.Int(conf.MasterJournalPort, journalPort)
			}
			if !cmd.Flags().Changed("journal-peers") {
				peers = p.String(conf.MasterJournalAddresses, peers)
			}
			if !cmd.Flags().Changed("gc-heap-floor") {
				gcFloor = p.String(conf.MasterGCHeapFloor, gcFloor)
			}
			floor, err := conf.ParseSize(gcFloor)
			if err != nil || floor < 0 {
				return usagef("--gc-heap-floor %q: want a size such as 256MB, or 0 for Go's default GC", gcFloor)
			}
			defer gctune.Start(floor).Stop()
			if !cmd.Flags().Changed("journal-election-timeout") {
				cfg.JournalElectionTimeout = p.Duration(conf.MasterJournalElectionTimeout, cfg.JournalElectionTimeout)
			}
			if cfg.RootUFS == "" {
				cfg.RootUFS = filepath.Join(cfg.Dir, "ufs")
			}
			if cfg.RootUFSProperties, err = rootUFSOptions(g, rootOptions); err != nil {
				return err
			}
			cfg.MetadataSyncInterval = masterSyncInterval(g)
			cfg.Address = meta.HostPort(host, port)
			cfg.WebAddress = meta.HostPort(host, webPort)
			if peers != "" {
				if journalBind == "" {
					journalBind = meta.HostPort(host, journalPort)
				}
				self, others, err := journalMembers(peers, cfg.JournalID, meta.HostPort(host, journalPort))
				if err != nil {
					return err
				}
				cfg.JournalID, cfg.JournalAdvertise, cfg.JournalPeers = self.ID, self.Address, others
				cfg.JournalBindAddress = journalBind
			}
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
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", "./alcove-data/master", "journal and metadata directory (alluxio.master.journal.folder)")
	f.StringVar(&cfg.RootUFS, "root-ufs", "", "UFS URI mounted at / when the namespace is new (default DIR/ufs), e.g. s3://bucket/prefix; every member of a group must see the same UFS")
	f.StringArrayVar(&rootOptions, "root-ufs-option", nil, "root UFS option KEY=VALUE (repeatable; alluxio.master.mount.table.root.option.KEY); credentials: prefer the AWS_* environment")
	f.StringVar(&host, "host", "127.0.0.1", "address to bind and advertise")
	f.IntVar(&port, "port", meta.MasterRPCPort, "RPC port (alluxio.master.rpc.port)")
	f.IntVar(&webPort, "web-port", meta.MasterWebPort, "web UI and /metrics port (alluxio.master.web.port)")
	f.DurationVar(&cfg.WorkerTimeout, "worker-timeout", 10*time.Second, "mark a worker lost after this long without a heartbeat; a new leader also waits this long for workers to register before it reports cache-only blocks lost (alluxio.master.worker.timeout)")
	f.StringVar(&peers, "journal-peers", "", "every member of the journal group, this one included: ID=HOST:PORT,... of their journal ports; HOST:PORT alone uses the address as the id (alluxio.master.embedded.journal.addresses)")
	f.StringVar(&cfg.JournalID, "journal-id", "", "this member's id in --journal-peers (default: the entry whose address is --host:--journal-port)")
	f.IntVar(&journalPort, "journal-port", meta.JournalPort, "journal (raft) port of this member (alluxio.master.embedded.journal.port)")
	f.StringVar(&journalBind, "journal-bind", "", "journal listen address when it differs from this member's address in --journal-peers (default --host:--journal-port)")
	f.DurationVar(&cfg.JournalElectionTimeout, "journal-election-timeout", journal.DefaultElectionTimeout, "a standby that hears nothing from the leader for 1-2x this long starts an election (alluxio.master.embedded.journal.election.timeout.min)")
	f.StringVar(&gcFloor, "gc-heap-floor", "256MB", "let the heap grow to this size between collections while the live heap is small (the namespace is off the Go heap), which cuts the GC's CPU under metadata load (BENCHMARKS.md); 0 keeps Go's default; GOGC or GOMEMLIMIT in the environment win (alluxio.master.gc.heap.floor)")
	f.BoolVar(&kubeAuth, "kube-auth", false, "accept pods' ServiceAccount tokens (audience alcove), verified by TokenReview with the in-cluster configuration")
	f.BoolVar(&cfg.UnsafeLocalReads, "unsafe-local-reads", false, "TESTING ONLY: serve reads from local state without a leadership check (stale reads)")
	_ = f.MarkHidden("unsafe-local-reads")
	return cmd
}

// journalMembers parses --journal-peers and picks this member: the entry
// named id, else the one whose address is self.
func journalMembers(list, id, self string) (journal.Peer, []journal.Peer, error) {
	var all []journal.Peer
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		pid, addr, named := strings.Cut(item, "=")
		if !named {
			pid, addr = item, item
		}
		if pid == "" {
			return journal.Peer{}, nil, usagef("--journal-peers %q: empty id in %q", list, item)
		}
		h, portStr, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(portStr); err != nil || perr != nil || h == "" || n <= 0 || n > 65535 {
			return journal.Peer{}, nil, usagef("--journal-peers %q: %q is not HOST:PORT", list, addr)
		}
		if ids[pid] || addrs[addr] {
			return journal.Peer{}, nil, usagef("--journal-peers %q: %q is listed twice", list, item)
		}
		ids[pid], addrs[addr] = true, true
		all = append(all, journal.Peer{ID: pid, Address: addr})
	}
	if len(all) == 0 {
		return journal.Peer{}, nil, usagef("--journal-peers %q: no members", list)
	}
	at := -1
	for i, p := range all {
		if (id != "" && p.ID == id) || (id == "" && p.Address == self) {
			at = i
		}
	}
	if at < 0 {
		if id != "" {
			return journal.Peer{}, nil, usagef("--journal-id %q is not in --journal-peers %q", id, list)
		}
		return journal.Peer{}, nil, usagef("--journal-peers %q does not list this master at %s: set --journal-id to its id (or --host/--journal-port to its address)", list, self)
	}
	others := append(append([]journal.Peer{}, all[:at]...), all[at+1:]...)
	return all[at], others, nil
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
