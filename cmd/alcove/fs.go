package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
)

// clientConfig builds a client configuration from flags, env and properties.
func (g *globals) clientConfig() (client.Config, error) {
	// ALCOVE_TOKEN_FILE: a pod's projected ServiceAccount token (audience
	// alcove) proves the user instead of the asserted OS user.
	cfg := client.Config{MasterAddresses: g.masterAddresses(), Node: os.Getenv("ALCOVE_NODE"), TokenFile: os.Getenv("ALCOVE_TOKEN_FILE")}
	var err error
	if cfg.TLS, err = g.clientTLS(); err != nil {
		return cfg, err
	}
	if cfg.Node == "" && g.props != nil {
		cfg.Node = g.props.String(conf.UserHostname, "")
	}
	if g.props == nil {
		return cfg, nil
	}
	if v, ok := g.props.Get(conf.UserWriteType); ok {
		cfg.WriteType, _ = meta.ParseWriteType(v)
	}
	if v, ok := g.props.Get(conf.UserReadType); ok {
		cfg.ReadType, _ = meta.ParseReadType(v)
	}
	cfg.BlockSize = g.props.Size(conf.UserBlockSize, 0)
	cfg.RetryTimeout = g.props.Duration(conf.UserRPCRetryMaxDuration, 0)
	if v, ok := g.props.Get(conf.UserMetadataSyncInterval); ok {
		d, _ := conf.ParseSyncInterval(v) // validated when the file was read
		cfg.MetadataSyncInterval = &d
	}
	cfg.ReplicationDurable = int32(g.props.Int(conf.UserReplicationDurable, 0))
	cfg.DataTimeout = g.props.Duration(conf.UserDataReadTimeout, 0)
	return cfg, nil
}

// withClient runs fn with a connected client.
func (g *globals) withClient(cmd *cobra.Command, fn func(context.Context, *client.Client) error) error {
	cfg, err := g.clientConfig()
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(cmd.Context(), c)
}

func newFsCmd(g *globals) *cobra.Command {
	fs := &cobra.Command{Use: "fs", Short: "Filesystem shell (Alluxio-compatible verbs)"}
	fs.AddCommand(
		fsLs(g), fsMkdir(g), fsStat(g), fsRm(g), fsMv(g), fsDu(g), fsCount(g),
		fsCopyFromLocal(g), fsCopyToLocal(g), fsCat(g), fsChecksum(g),
		fsMount(g), fsUnmount(g), fsFree(g), fsPin(g, true), fsPin(g, false), fsSetTTL(g), fsLeader(g), fsDistributedLoad(g, "load"), fsPersist(g), fsLoadMetadata(g),
		fsDistributedLoad(g, "distributedLoad"), fsDistributedCopy(g, false), fsDistributedCopy(g, true),
	)
	return fs
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expects %s (got %d argument(s))", what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("expects %s", what)
		}
		return nil
	}
}

func checkOutput(o string) error {
	if o != "" && o != "json" && o != "table" {
		return usagef("-o %q: use -o json or leave it out", o)
	}
	return nil
}

func fsLs(g *globals) *cobra.Command {
	var recursive, sync bool
	var output string
	cmd := &cobra.Command{
		Use:   "ls [-R] [-f] [-o json] PATH",
		Short: "List a directory (or show a file)",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := c.ListStatus(ctx, args[0], recursive, sync)
				if err != nil {
					return err
				}
				if output == "json" {
					out := make([]fileJSON, 0, len(infos))
					for _, i := range infos {
						out = append(out, toJSON(i, false))
					}
					return printJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 1, 4, 2, ' ', 0)
				for _, i := range infos {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d%%\t%s\n", modeString(i), i.GetOwner(), i.GetGroup(),
						humanSize(i.GetLength()), persistence(i), msTime(i.GetLastModificationTimeMs()), i.GetInAlcovePercentage(), i.GetPath())
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list subdirectories recursively")
	cmd.Flags().BoolVarP(&sync, "sync", "f", false, "re-read the UFS listing first")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func fsMkdir(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mkdir PATH...",
		Short: "Create directories (and missing parents)",
		Args:  minArgs(1, "at least one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				for _, p := range args {
					if _, err := c.Mkdir(ctx, p, true, false, 0); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "Successfully created directory %s\n", p)
				}
				return nil
			})
		},
	}
}

func fsStat(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stat [-o json] PATH",
		Short: "Show a path's metadata and its blocks' locations",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.GetStatus(ctx, args[0])
				if err != nil {
					return err
				}
				if info.GetFolder() {
					if info.InAlcovePercentage, err = treePercentage(ctx, c, info.GetPath()); err != nil {
						return err
					}
				}
				if output == "json" {
					return printJSON(cmd.OutOrStdout(), toJSON(info, true))
				}
				return printStat(cmd, info)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// treePercentage is the share of the bytes of the files under a directory
// that is cached (100 for a tree with no bytes).
func treePercentage(ctx context.Context, c *client.Client, dir string) (int32, error) {
	infos, err := c.ListStatus(ctx, dir, true, false)
	if err != nil {
		return 0, err
	}
	var total, cached int64
	for _, f := range infos {
		if !f.GetFolder() {
			total += f.GetLength()
			for _, b := range f.GetFileBlockInfos() {
				if len(b.GetBlockInfo().GetLocations()) > 0 {
					cached += b.GetBlockInfo().GetLength()
				}
			}
		}
	}
	if total == 0 {
		return 100, nil
	}
	return int32(cached * 100 / total), nil
}

func printStat(cmd *cobra.Command, info *apiv1.FileInfo) error {
	w := cmd.OutOrStdout()
	kind := "file"
	if info.GetFolder() {
		kind = "directory"
	}
	fmt.Fprintf(w, "%s is a %s path.\n", info.GetPath(), kind)
	fmt.Fprintf(w, "FileInfo{fileId=%d, path=%s, length=%d, blockSizeBytes=%d, mode=%s, owner=%s, group=%s, completed=%t, persistenceState=%s, pinned=%t, inAlcovePercentage=%d, ufsPath=%s, lastModified=%s",
		info.GetFileId(), info.GetPath(), info.GetLength(), info.GetBlockSizeBytes(), modeString(info), info.GetOwner(), info.GetGroup(),
		info.GetCompleted(), persistence(info), info.GetPinned(), info.GetInAlcovePercentage(), info.GetUfsPath(), msTime(info.GetLastModificationTimeMs()))
	if info.GetTtlMs() > 0 {
		fmt.Fprintf(w, ", ttl=%dms, ttlAction=%s", info.GetTtlMs(), info.GetTtlAction())
	}
	fmt.Fprintln(w, "}")
	if info.GetFolder() {
		return nil
	}
	fmt.Fprintf(w, "Containing the following blocks:\n")
	for _, fbi := range info.GetFileBlockInfos() {
		bi := fbi.GetBlockInfo()
		var locs []string
		for _, l := range bi.GetLocations() {
			locs = append(locs, fmt.Sprintf("{workerId=%d, node=%s, address=%s, tier=%s}", l.GetWorkerId(), l.GetNode(), l.GetWorkerAddress(), l.GetTier()))
		}
		fmt.Fprintf(w, "BlockInfo{id=%d, offset=%d, length=%d, locations=[%s]}\n", bi.GetBlockId(), fbi.GetOffset(), bi.GetLength(), strings.Join(locs, ", "))
	}
	return nil
}

func fsRm(g *globals) *cobra.Command {
	var recursive, alcoveOnly bool
	cmd := &cobra.Command{
		Use:   "rm [-R] [--alcoveOnly] PATH...",
		Short: "Remove files or directories (also from the UFS unless --alcoveOnly)",
		Args:  minArgs(1, "at least one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				for _, p := range args {
					if err := c.Delete(ctx, p, recursive, alcoveOnly); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s has been removed\n", p)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "remove directories and their contents")
	cmd.Flags().BoolVar(&alcoveOnly, "alcoveOnly", false, "remove from Alcove only, keep the UFS copy")
	cmd.Flags().BoolVar(&alcoveOnly, "alluxioOnly", false, "alias of --alcoveOnly")
	return cmd
}

func fsMv(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mv SRC DST",
		Short: "Rename a file or directory",
		Args:  exactArgs(2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				dst := args[1]
				if info, err := c.GetStatus(ctx, dst); err == nil && info.GetFolder() {
					dst = meta.Join(info.GetPath(), meta.Base(mustClean(args[0])))
				}
				if err := c.Rename(ctx, args[0], dst, false); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Renamed %s to %s\n", args[0], dst)
				return nil
			})
		},
	}
}

func mustClean(p string) string {
	c, err := meta.CleanPath(p)
	if err != nil {
		return p
	}
	return c
}

// walk lists path recursively (a file lists as itself).
func walk(ctx context.Context, c *client.Client, path string) ([]*apiv1.FileInfo, error) {
	info, err := c.GetStatus(ctx, path)
	if err != nil {
		return nil, err
	}
	if !info.GetFolder() {
		return []*apiv1.FileInfo{info}, nil
	}
	return c.ListStatus(ctx, path, true, false)
}

func fsDu(g *globals) *cobra.Command {
	var summary, human bool
	cmd := &cobra.Command{
		Use:   "du [-s] [-h] PATH",
		Short: "Show sizes of files and how much of them is cached",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			size := func(n int64) string {
				if human {
					return humanSize(n)
				}
				return fmt.Sprint(n)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := walk(ctx, c, args[0])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 1, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "File Size\tIn Alcove\tPath")
				var total, cached int64
				for _, i := range infos {
					if i.GetFolder() {
						continue
					}
					inA := i.GetLength() * int64(i.GetInAlcovePercentage()) / 100
					total += i.GetLength()
					cached += inA
					if !summary {
						fmt.Fprintf(tw, "%s\t%s (%d%%)\t%s\n", size(i.GetLength()), size(inA), i.GetInAlcovePercentage(), i.GetPath())
					}
				}
				if summary {
					pct := int64(100)
					if total > 0 {
						pct = cached * 100 / total
					}
					fmt.Fprintf(tw, "%s\t%s (%d%%)\t%s\n", size(total), size(cached), pct, args[0])
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&summary, "summary", "s", false, "one total line")
	cmd.Flags().BoolVarP(&human, "human", "h", false, "human-readable sizes")
	// -h means --human here (as in du); cobra would otherwise claim it for help.
	cmd.Flags().Bool("help", false, "help for du")
	return cmd
}

func fsCount(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "count PATH",
		Short: "Count files, folders and bytes under a path",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := walk(ctx, c, args[0])
				if err != nil {
					return err
				}
				var files, folders, bytes int64
				for _, i := range infos {
					if i.GetFolder() {
						folders++
					} else {
						files++
						bytes += i.GetLength()
					}
				}
				if root, err := c.GetStatus(ctx, args[0]); err == nil && root.GetFolder() {
					folders++
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 1, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "File Count\tFolder Count\tFolder Size")
				fmt.Fprintf(tw, "%d\t%d\t%d\n", files, folders, bytes)
				return tw.Flush()
			})
		},
	}
}

func fsMount(g *globals) *cobra.Command {
	var readOnly, shared bool
	var options []string
	cmd := &cobra.Command{
		Use:   "mount [--readonly] [--shared] [--option K=V] [ALCOVE_PATH UFS_URI]",
		Short: "Mount a UFS at a namespace path, or list mounts",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return usagef("expects ALCOVE_PATH and UFS_URI, or nothing to list mounts")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			props, err := parseOptions("--option", options)
			if err != nil {
				return err
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if len(args) == 0 {
					mps, err := c.MountTable(ctx)
					if err != nil {
						return err
					}
					for _, m := range mps {
						ro := ""
						if m.GetReadOnly() {
							ro = " (readonly)"
						}
						fmt.Fprintf(cmd.OutOrStdout(), "%s  on  %s%s%s\n", m.GetUfsUri(), m.GetAlcovePath(), ro, optionsString(m.GetProperties()))
					}
					return nil
				}
				if err := c.Mount(ctx, args[0], args[1], readOnly, shared, props); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Mounted %s at %s\n", args[1], args[0])
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&readOnly, "readonly", false, "mount read-only")
	cmd.Flags().BoolVar(&shared, "shared", false, "mount shared")
	cmd.Flags().StringArrayVar(&options, "option", nil, "UFS property KEY=VALUE (repeatable), e.g. alluxio.underfs.s3.endpoint=http://minio:9000; prefer the AWS_* environment of master and workers for credentials (command lines are visible to other users)")
	return cmd
}

// parseOptions turns repeated KEY=VALUE flags into mount properties.
func parseOptions(flag string, opts []string) (map[string]string, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	props := map[string]string{}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q: use KEY=VALUE", flag, strings.SplitN(o, "=", 2)[0])
		}
		props[k] = v
	}
	return props, nil
}

// optionsString renders mount properties as the master hands them to
// clients (secrets already redacted), sorted.
func optionsString(props map[string]string) string {
	if len(props) == 0 {
		return ""
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		kv = append(kv, k+"="+props[k])
	}
	return " (" + strings.Join(kv, ", ") + ")"
}

func fsLoadMetadata(g *globals) *cobra.Command {
	var recursive, force bool
	cmd := &cobra.Command{
		Use:   "loadMetadata [-R] [-F] PATH",
		Short: "Re-read a path's metadata from the UFS (objects added, changed or deleted behind Alcove's back)",
		Long: `Re-reads PATH's metadata from the UFS: new objects appear, deleted ones
disappear, and a file whose object changed (S3 ETag, length or mtime) gets
new metadata; its cached blocks of the old version are dropped. With -R the
whole subtree is re-read. Metadata is always re-read (-F is accepted for
Alluxio compatibility).`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := c.LoadMetadata(ctx, args[0], recursive)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Loaded metadata of %s (%d entries)\n", args[0], len(infos))
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "re-read the whole subtree")
	cmd.Flags().BoolVarP(&force, "force", "F", false, "re-read even loaded metadata (always the case)")
	return cmd
}

func fsUnmount(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unmount ALCOVE_PATH",
		Short: "Unmount a UFS",
		Args:  exactArgs(1, "one ALCOVE_PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Unmount(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Unmounted %s\n", args[0])
				return nil
			})
		},
	}
}

func fsFree(g *globals) *cobra.Command {
	var force, async bool
	cmd := &cobra.Command{
		Use:   "free [-f] [--async] PATH",
		Short: "Remove a path's cached blocks (data stays in the UFS), with the job tier",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &apiv1.JobSpec{Type: apiv1.JobType_FREE, Path: args[0], Force: force}
			return runJob(cmd, g, spec, async, args[0]+" was successfully freed from Alcove space.")
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "also free pinned files")
	cmd.Flags().BoolVar(&async, "async", false, "submit the job and return")
	return cmd
}

func fsPin(g *globals, pin bool) *cobra.Command {
	use, short, done := "pin PATH", "Keep a path's blocks from eviction", "was successfully pinned."
	if !pin {
		use, short, done = "unpin PATH", "Allow a path's blocks to be evicted", "was successfully unpinned."
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: args[0], Pinned: &pin, Recursive: true}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "File '%s' %s\n", args[0], done)
				return nil
			})
		},
	}
}

func fsSetTTL(g *globals) *cobra.Command {
	var action string
	cmd := &cobra.Command{
		Use:   "setTtl [--action delete|free] PATH TTL",
		Short: "Delete or free a path after TTL (e.g. 3600000 ms, 1h)",
		Args:  exactArgs(2, "PATH and TTL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := conf.ParseDuration(args[1])
			if err != nil || d <= 0 {
				return usagef("TTL %q: give a positive duration such as 1h or 3600000 (ms)", args[1])
			}
			var act apiv1.TtlAction
			switch strings.ToLower(action) {
			case "delete":
				act = apiv1.TtlAction_TTL_DELETE
			case "free":
				act = apiv1.TtlAction_TTL_FREE
			default:
				return usagef("--action %q: use delete or free", action)
			}
			ms := d.Milliseconds()
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: args[0], TtlMs: &ms, TtlAction: &act}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "TTL of path '%s' was successfully set to %d milliseconds, with expiry action set to %s\n", args[0], ms, strings.ToUpper(action))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&action, "action", "delete", "what happens at expiry: delete or free")
	return cmd
}

func fsLeader(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "leader",
		Short: "Print the leader master's address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.MasterInfo(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), info.GetLeaderAddress())
				return nil
			})
		},
	}
}

// since renders an uptime.
func since(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.Since(time.UnixMilli(ms)).Truncate(time.Second).String()
}
