package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/job"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// jobMasterAddress resolves --job-master, then ALCOVE_JOB_MASTER, then
// alluxio.job.master.hostname (+ rpc.port), then the master's host on 20001.
func (g *globals) jobMasterAddress() string {
	if g.jobMaster != "" {
		return g.jobMaster
	}
	if a := os.Getenv("ALCOVE_JOB_MASTER"); a != "" {
		return a
	}
	port := meta.JobMasterRPCPort
	if g.props != nil {
		port = g.props.Int(conf.JobMasterRPCPort, port)
		if h, ok := g.props.Get(conf.JobMasterHostname); ok {
			return meta.HostPort(h, port)
		}
	}
	host, _, err := net.SplitHostPort(g.masterAddresses()[0])
	if err != nil {
		host = "127.0.0.1"
	}
	return meta.HostPort(host, port)
}

// withJobs runs fn with a job master client and a filesystem client.
func (g *globals) withJobs(cmd *cobra.Command, fn func(context.Context, *client.JobClient, *client.Client) error) error {
	tlsSrc, err := g.clientTLS()
	if err != nil {
		return err
	}
	jc, err := client.NewJobClient(g.jobMasterAddress(), tlsSrc)
	if err != nil {
		return err
	}
	defer jc.Close()
	return g.withClient(cmd, func(ctx context.Context, c *client.Client) error { return fn(ctx, jc, c) })
}

func newJobMasterCmd(g *globals) *cobra.Command {
	var cfg job.MasterConfig
	var host string
	var port, webPort int
	var dataloads bool
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "job-master",
		Short: "Run the job master (durable load/persist/free/replicate/copy/move jobs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := g.props
			if !cmd.Flags().Changed("port") {
				port = p.Int(conf.JobMasterRPCPort, port)
			}
			if !cmd.Flags().Changed("web-port") {
				webPort = p.Int(conf.JobMasterWebPort, webPort)
			}
			if !cmd.Flags().Changed("replication-min") {
				cfg.ReplicationMin = p.Int(conf.UserReplicationMin, cfg.ReplicationMin)
			}
			cfg.Address, cfg.WebAddress = meta.HostPort(host, port), meta.HostPort(host, webPort)
			cfg.MasterAddresses = g.masterAddresses()
			var err error
			if cfg.TLS, err = g.tls(security.RoleJob); err != nil {
				return err
			}
			m, err := job.NewMaster(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := m.Start(ctx); err != nil {
				return err
			}
			defer m.Close()
			if dataloads {
				wait, err := startDataLoadController(ctx, kubeconfig, m.Addr(), cfg.TLS)
				if err != nil {
					return err
				}
				defer wait()
			}
			<-ctx.Done()
			return m.Close()
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "./alcove-data/job", "job store directory")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "address to bind and advertise")
	cmd.Flags().IntVar(&port, "port", meta.JobMasterRPCPort, "RPC port (alluxio.job.master.rpc.port)")
	cmd.Flags().IntVar(&webPort, "web-port", meta.JobMasterWebPort, "web page and /metrics port (alluxio.job.master.web.port)")
	cmd.Flags().DurationVar(&cfg.WorkerTimeout, "worker-timeout", 10*time.Second, "a job worker silent this long is lost; its tasks are planned again")
	cmd.Flags().IntVar(&cfg.Retries, "retries", 3, "attempts per file before a job reports it failed")
	cmd.Flags().BoolVar(&dataloads, "dataload-controller", false, "reconcile DataLoad resources (alcove.io/v1alpha1) of a Kubernetes cluster")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for the DataLoad controller (default: in-cluster configuration)")
	cmd.Flags().IntVar(&cfg.ReplicationMin, "replication-min", 0, "keep this many copies of every block (alluxio.user.file.replication.min; 0: off)")
	return cmd
}

// jobWorkerFlags are shared by `alcove job-worker` and `alcove local`.
type jobWorkerFlags struct {
	port, webPort, slots int
	bandwidth, labels    string
}

func (f *jobWorkerFlags) register(cmd *cobra.Command, prefix string) {
	cmd.Flags().IntVar(&f.port, prefix+"port", meta.JobWorkerRPCPort, "job worker RPC port (alluxio.job.worker.rpc.port)")
	cmd.Flags().IntVar(&f.webPort, prefix+"web-port", meta.JobWorkerWebPort, "job worker /metrics port (alluxio.job.worker.web.port)")
	cmd.Flags().IntVar(&f.slots, prefix+"threads", 4, "tasks run at once (alluxio.job.worker.threadpool.size)")
	cmd.Flags().StringVar(&f.bandwidth, prefix+"bandwidth", "0", "cap on bytes per second loaded or copied, e.g. 200MB (alluxio.job.worker.bandwidth; 0: none)")
	cmd.Flags().StringVar(&f.labels, prefix+"node-labels", "", "labels jobs' node selectors match, k=v,k2=v2")
}

func (f *jobWorkerFlags) config(cmd *cobra.Command, g *globals, prefix, host, node, jobMaster string) (job.WorkerConfig, error) {
	p := g.props
	if !cmd.Flags().Changed(prefix + "port") {
		f.port = p.Int(conf.JobWorkerRPCPort, f.port)
	}
	if !cmd.Flags().Changed(prefix + "web-port") {
		f.webPort = p.Int(conf.JobWorkerWebPort, f.webPort)
	}
	if !cmd.Flags().Changed(prefix + "threads") {
		f.slots = p.Int(conf.JobWorkerThreads, f.slots)
	}
	bw, err := conf.ParseSize(f.bandwidth)
	if err != nil {
		return job.WorkerConfig{}, usagef("--%sbandwidth: %v: give bytes per second such as 200MB, or 0", prefix, err)
	}
	if !cmd.Flags().Changed(prefix + "bandwidth") {
		bw = p.Size(conf.JobWorkerBandwidth, bw)
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return job.WorkerConfig{}, usagef("--%snode-labels: %v", prefix, err)
	}
	return job.WorkerConfig{JobMasterAddress: jobMaster, MasterAddresses: g.masterAddresses(), Node: node, Labels: labels,
		Address: meta.HostPort(host, f.port), WebAddress: meta.HostPort(host, f.webPort), Slots: f.slots, BandwidthBytes: bw}, nil
}

// jobWorkerTLS is the job worker daemon's certificate.
func (g *globals) jobWorkerTLS(cfg *job.WorkerConfig) (err error) {
	cfg.TLS, err = g.tls(security.RoleJob)
	return err
}

// parseLabels reads k=v,k2=v2.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: use key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func newJobWorkerCmd(g *globals) *cobra.Command {
	var f jobWorkerFlags
	var host, node string
	cmd := &cobra.Command{
		Use:   "job-worker",
		Short: "Run a job worker (runs job tasks on this node's worker)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd, g, "", host, node, g.jobMasterAddress())
			if err != nil {
				return err
			}
			if err := g.jobWorkerTLS(&cfg); err != nil {
				return err
			}
			w, err := job.NewWorker(cfg)
			if err != nil {
				return err
			}
			return w.Run(cmd.Context())
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "address to bind and advertise")
	cmd.Flags().StringVar(&node, "node-name", defaultNode(), "node name: tasks go to the worker of this node (env ALCOVE_NODE)")
	return cmd
}

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "List, inspect and cancel jobs of the job master"}
	cmd.AddCommand(jobLs(g), jobStat(g), jobCancel(g))
	return cmd
}

func jobLs(g *globals) *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:   "ls [-a] [-o json]",
		Short: "List running jobs (-a: finished ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.withJobs(cmd, func(ctx context.Context, jc *client.JobClient, _ *client.Client) error {
				jobs, err := jc.List(ctx, all)
				if err != nil {
					return err
				}
				if output == "json" {
					return printJobsJSON(cmd.OutOrStdout(), jobs)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tPROGRESS\tFILES\tBYTES\tPATH")
				for _, j := range jobs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d%%\t%d/%d\t%s/%s\t%s\n", j.GetId(), strings.ToLower(j.GetSpec().GetType().String()),
						job.StateName(j.GetState()), j.GetPercent(), j.GetFilesDone(), j.GetFilesTotal(),
						humanSize(j.GetBytesDone()), humanSize(j.GetBytesTotal()), jobPaths(j))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include finished jobs")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func jobPaths(j *apiv1.JobInfo) string {
	if d := j.GetSpec().GetDst(); d != "" {
		return j.GetSpec().GetPath() + " -> " + d
	}
	return j.GetSpec().GetPath()
}

func printJobsJSON(w io.Writer, jobs []*apiv1.JobInfo) error {
	parts := make([]string, len(jobs))
	for i, j := range jobs {
		b, err := protojson.Marshal(j)
		if err != nil {
			return err
		}
		parts[i] = string(b)
	}
	_, err := fmt.Fprintf(w, "[%s]\n", strings.Join(parts, ","))
	return err
}

func parseJobID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("job id %q: give the number `alcove job ls` shows", s)
	}
	return id, nil
}

func jobStat(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stat [-o json] ID",
		Short: "Show a job's definition, state, progress and failed files",
		Args:  exactArgs(1, "one job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			return g.withJobs(cmd, func(ctx context.Context, jc *client.JobClient, _ *client.Client) error {
				j, err := jc.Get(ctx, id)
				if err != nil {
					return err
				}
				if output == "json" {
					b, err := protojson.MarshalOptions{Multiline: true}.Marshal(j)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
					return err
				}
				printJob(cmd.OutOrStdout(), j)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func printJob(w io.Writer, j *apiv1.JobInfo) {
	sp := j.GetSpec()
	fmt.Fprintf(w, "Job %d: %s %s\n", j.GetId(), strings.ToLower(sp.GetType().String()), jobPaths(j))
	fmt.Fprintf(w, "  state     %s %s\n", job.StateName(j.GetState()), j.GetMessage())
	fmt.Fprintf(w, "  progress  %d%%: %d/%d files, %s/%s\n", j.GetPercent(), j.GetFilesDone(), j.GetFilesTotal(), humanSize(j.GetBytesDone()), humanSize(j.GetBytesTotal()))
	fmt.Fprintf(w, "  tasks     %d running, %d done, %d failed attempts; %s moved\n", j.GetTasksRunning(), j.GetTasksDone(), j.GetTasksFailed(), humanSize(j.GetBytesMoved()))
	if sp.GetReplication() > 0 || sp.GetPercent() > 0 || len(sp.GetNodes()) > 0 || len(sp.GetNodeSelector()) > 0 {
		fmt.Fprintf(w, "  target    replication %d, %d%%, nodes %v, selector %v\n", max(sp.GetReplication(), 1), cmp0(sp.GetPercent(), 100), sp.GetNodes(), sp.GetNodeSelector())
	}
	fmt.Fprintf(w, "  created   %s\n", msTime(j.GetCreateTimeMs()))
	if j.GetEndTimeMs() > 0 {
		fmt.Fprintf(w, "  ended     %s\n", msTime(j.GetEndTimeMs()))
	}
	for _, f := range j.GetFailed() {
		fmt.Fprintf(w, "  FAILED    %s: %s (%d attempts)\n", f.GetPath(), f.GetError(), f.GetAttempts())
	}
}

func cmp0(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func jobCancel(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running job",
		Args:  exactArgs(1, "one job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			return g.withJobs(cmd, func(ctx context.Context, jc *client.JobClient, _ *client.Client) error {
				if err := jc.Cancel(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Job %d canceled.\n", id)
				return nil
			})
		},
	}
}

// runJob submits spec and, unless async, follows it to the end: a progress
// bar on a terminal, a line every few seconds otherwise. Ctrl-C asks
// whether to cancel the job or leave it running.
func runJob(cmd *cobra.Command, g *globals, spec *apiv1.JobSpec, async bool, quietDone string) error {
	return g.withJobs(cmd, func(ctx context.Context, jc *client.JobClient, _ *client.Client) error {
		id, err := jc.Submit(ctx, spec)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if async {
			fmt.Fprintf(out, "Job %d submitted: follow it with `alcove job stat %d`\n", id, id)
			return nil
		}
		j, err := followJob(ctx, cmd, jc, id)
		if err != nil {
			return err
		}
		switch j.GetState() {
		case apiv1.JobState_JOB_COMPLETED:
			if quietDone != "" {
				fmt.Fprintln(out, quietDone)
			} else {
				fmt.Fprintf(out, "Job %d completed: %d%%, %d/%d files, %s/%s in %s\n", id, j.GetPercent(), j.GetFilesDone(), j.GetFilesTotal(),
					humanSize(j.GetBytesDone()), humanSize(j.GetBytesTotal()), time.Duration(j.GetEndTimeMs()-j.GetCreateTimeMs())*time.Millisecond)
			}
			for _, f := range j.GetFailed() {
				fmt.Fprintf(out, "  failed %s: %s (%d attempts)\n", f.GetPath(), f.GetError(), f.GetAttempts())
			}
			return nil
		case apiv1.JobState_JOB_RUNNING:
			fmt.Fprintf(out, "Job %d keeps running: follow it with `alcove job stat %d`, stop it with `alcove job cancel %d`\n", id, id, id)
			return nil
		}
		for _, f := range j.GetFailed() {
			fmt.Fprintf(cmd.ErrOrStderr(), "  failed %s: %s (%d attempts)\n", f.GetPath(), f.GetError(), f.GetAttempts())
		}
		return fmt.Errorf("job %d %s: %s", id, strings.ToLower(job.StateName(j.GetState())), j.GetMessage())
	})
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// followJob polls the job until it ends, or until Ctrl-C (the command's
// context ends) is answered with "detach" (the job is returned running).
func followJob(ctx context.Context, cmd *cobra.Command, jc *client.JobClient, id int64) (*apiv1.JobInfo, error) {
	rpc := context.WithoutCancel(ctx)
	tty := isTerminal(os.Stderr)
	// The bar is made once the job knows its size: a bar of unknown length
	// would start a spinner goroutine of its own.
	var bar *progressbar.ProgressBar
	interval, lineEvery := 200*time.Millisecond, 5*time.Second
	lastLine := time.Time{}
	start := time.Now()
	for {
		j, err := jc.Get(rpc, id)
		if err != nil {
			return nil, err
		}
		if tty && bar == nil && j.GetBytesTotal() > 0 {
			bar = progressbar.NewOptions64(j.GetBytesTotal(), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true),
				progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowDescriptionAtLineEnd(), progressbar.OptionSetWidth(30))
		}
		if bar != nil {
			bar.ChangeMax64(j.GetBytesTotal())
			_ = bar.Set64(j.GetBytesDone())
			bar.Describe(fmt.Sprintf("job %d: %d/%d files", id, j.GetFilesDone(), j.GetFilesTotal()))
		} else if finished := client.JobFinished(j.GetState()); finished || (j.GetFilesTotal() > 0 && time.Since(lastLine) >= lineEvery) {
			lastLine = time.Now()
			rate := float64(j.GetBytesMoved()) / max(time.Since(start).Seconds(), 0.001)
			fmt.Fprintf(cmd.ErrOrStderr(), "job %d %s: %d%%, %d/%d files, %s/%s, %s/s\n", id, job.StateName(j.GetState()), j.GetPercent(),
				j.GetFilesDone(), j.GetFilesTotal(), humanSize(j.GetBytesDone()), humanSize(j.GetBytesTotal()), humanSize(int64(rate)))
		}
		if client.JobFinished(j.GetState()) {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			return j, nil
		}
		select {
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
			}
			return interrupted(rpc, cmd, jc, id)
		case <-time.After(interval):
		}
	}
}

// interrupted asks (on a terminal) whether to cancel the job or detach.
func interrupted(ctx context.Context, cmd *cobra.Command, jc *client.JobClient, id int64) (*apiv1.JobInfo, error) {
	cancel := false
	if isTerminal(os.Stdin) {
		fmt.Fprintf(os.Stderr, "\nCancel job %d? [y: cancel it / N: leave it running] ", id)
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		cancel = strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y")
	}
	if cancel {
		if err := jc.Cancel(ctx, id); err != nil {
			return nil, err
		}
	}
	return jc.Get(ctx, id)
}

// loadSpecFlags are the target flags of distributedLoad (and fs load).
type loadSpecFlags struct {
	replication, percent int
	nodes, selector      string
	async                bool
}

func (f *loadSpecFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.replication, "replication", 1, "copies of every block, on distinct nodes")
	cmd.Flags().IntVar(&f.percent, "percent", 100, "stop once this percentage of the bytes is cached")
	cmd.Flags().StringVar(&f.nodes, "nodes", "", "cache only on these nodes: a,b")
	cmd.Flags().StringVar(&f.selector, "node-selector", "", "cache only on nodes whose job worker has these labels: k=v,k2=v2")
	cmd.Flags().BoolVar(&f.async, "async", false, "submit the job and return (follow it with `alcove job stat ID`)")
}

func (f *loadSpecFlags) spec(path string) (*apiv1.JobSpec, error) {
	if f.replication < 1 {
		return nil, usagef("--replication %d: give 1 or more", f.replication)
	}
	if f.percent < 1 || f.percent > 100 {
		return nil, usagef("--percent %d: give 1..100", f.percent)
	}
	if f.nodes != "" && f.selector != "" {
		return nil, usagef("give --nodes or --node-selector, not both")
	}
	sel, err := parseLabels(f.selector)
	if err != nil {
		return nil, usagef("--node-selector: %v", err)
	}
	spec := &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: path, Replication: int32(f.replication), Percent: int32(f.percent), NodeSelector: sel}
	for _, n := range strings.Split(f.nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			spec.Nodes = append(spec.Nodes, n)
		}
	}
	return spec, nil
}

func fsDistributedLoad(g *globals, use string) *cobra.Command {
	var f loadSpecFlags
	cmd := &cobra.Command{
		Use:   use + " PATH [--replication N] [--percent P] [--nodes a,b | --node-selector k=v] [--async]",
		Short: "Load a path into the cache with the job tier, to a replication and/or a percentage of its bytes",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(args[0])
			if err != nil {
				return err
			}
			done := ""
			if use == "load" {
				done = args[0] + " loaded"
			}
			return runJob(cmd, g, spec, f.async, done)
		},
	}
	f.register(cmd)
	return cmd
}

func fsDistributedCopy(g *globals, move bool) *cobra.Command {
	var writeType string
	var overwrite, async bool
	use, short, typ := "distributedCp", "Copy a file or tree (any mounts) with the job tier, checksummed", apiv1.JobType_COPY
	if move {
		use, short, typ = "distributedMv", "Move a file or tree (any mounts) with the job tier: copy, verify checksums, delete the source", apiv1.JobType_MOVE
	}
	cmd := &cobra.Command{
		Use:   use + " [--write-type T] [--overwrite] [--async] SRC DST",
		Short: short,
		Args:  exactArgs(2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			wt, err := meta.ParseWriteType(writeType)
			if err != nil {
				return usagef("--write-type %q: use MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH", writeType)
			}
			return runJob(cmd, g, &apiv1.JobSpec{Type: typ, Path: args[0], Dst: args[1], WriteType: wt, Overwrite: overwrite}, async, "")
		},
	}
	cmd.Flags().StringVar(&writeType, "write-type", "CACHE_THROUGH", "write type of the copies")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace destination files that differ")
	cmd.Flags().BoolVar(&async, "async", false, "submit the job and return")
	return cmd
}
