package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/job"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/worker"
)

func newLocalCmd(g *globals) *cobra.Command {
	var f workerFlags
	var dir, ufsURI string
	var masterPort, masterWebPort int
	var fuseMount string
	var ufsOptions []string
	var jf jobWorkerFlags
	var jobPort, jobWebPort int
	var noTLS bool
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run master, worker and job service on this machine, in the foreground",
		Long: `Runs an all-in-one Alcove on loopback: a master (RPC 19998, web 19999), a
worker (RPC 29999, web 30000) with a MEM tier on /dev/shm, and the job
service: a job master (RPC 20001, web 20002) and a job worker (RPC 30001,
web 30003). State lives under
--dir; restarting on the same --dir resumes the same namespace. The UFS
mounted at / is DIR/ufs unless --ufs (or alluxio.master.mount.table.root.ufs)
names another, e.g. s3://bucket/prefix with --ufs-option KEY=VALUE. Ctrl-C stops it cleanly.

Components talk over mTLS with a throwaway CA made in DIR/tls on the first
start; the CLI finds DIR/tls/admin by itself when DIR is ./alcove-data,
else give it --tls-dir DIR/tls/admin (or ALCOVE_TLS_DIR). --no-tls runs
plaintext.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if err := fsutil.MkdirAll(abs); err != nil { // its name must survive a power loss too
				return fmt.Errorf("create state directory: %w", err)
			}
			if !cmd.Flags().Changed("ufs") {
				ufsURI = g.props.String(conf.MasterRootUFS, "")
			}
			if ufsURI == "" {
				ufsURI = filepath.Join(abs, "ufs")
				if err := os.MkdirAll(ufsURI, 0o755); err != nil {
					return fmt.Errorf("create UFS directory: %w", err)
				}
			}
			if err := os.MkdirAll(filepath.Join(abs, "worker"), 0o755); err != nil {
				return fmt.Errorf("create state directory: %w", err)
			}
			rootProps, err := rootUFSOptions(g, ufsOptions)
			if err != nil {
				return err
			}
			certs, err := localTLS(abs, f.host, noTLS)
			if err != nil {
				return err
			}
			m, err := master.New(master.Config{
				Dir:                  filepath.Join(abs, "master"),
				Address:              meta.HostPort(f.host, masterPort),
				WebAddress:           meta.HostPort(f.host, masterWebPort),
				RootUFS:              ufsURI,
				RootUFSProperties:    rootProps,
				MetadataSyncInterval: masterSyncInterval(g),
				TLS:                  certs[security.RoleMaster],
			})
			if err != nil {
				return err
			}
			if err := m.Start(ctx); err != nil {
				return fmt.Errorf("start master: %w", err)
			}
			defer m.Close()
			wcfg, err := f.config(cmd, g, abs, []string{m.Addr()})
			if err != nil {
				return err
			}
			wcfg.TLS = certs[security.RoleWorker]
			w, err := worker.New(wcfg)
			if err != nil {
				return err
			}
			if err := w.Start(ctx); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
			defer w.Close()
			jm, err := job.NewMaster(job.MasterConfig{Dir: filepath.Join(abs, "job"), Address: meta.HostPort(f.host, jobPort),
				WebAddress: meta.HostPort(f.host, jobWebPort), MasterAddresses: []string{m.Addr()}, TLS: certs[security.RoleJob]})
			if err != nil {
				return err
			}
			if err := jm.Start(ctx); err != nil {
				return fmt.Errorf("start job master: %w", err)
			}
			defer jm.Close()
			jcfg, err := jf.config(cmd, g, "job-worker-", f.host, wcfg.Node, jm.Addr())
			if err != nil {
				return err
			}
			jcfg.MasterAddresses = []string{m.Addr()}
			jcfg.TLS = certs[security.RoleJob]
			jw, err := job.NewWorker(jcfg)
			if err != nil {
				return err
			}
			if err := jw.Start(ctx); err != nil {
				return fmt.Errorf("start job worker: %w", err)
			}
			defer jw.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Alcove %s is running (Ctrl-C to stop)\n", version)
			fmt.Fprintf(out, "  master   %s   web http://%s\n", m.Addr(), m.WebAddr())
			fmt.Fprintf(out, "  worker   %s   web http://%s   node %s\n", w.Addr(), w.WebAddr(), wcfg.Node)
			fmt.Fprintf(out, "  jobs     master %s   web http://%s   worker %s\n", jm.Addr(), jm.WebAddr(), jw.Addr())
			for _, t := range wcfg.Tiers {
				fmt.Fprintf(out, "  tier     %s %s (%s)\n", t.Alias, t.Dir, humanSize(t.QuotaBytes))
			}
			if wcfg.DomainSocket != "" {
				fmt.Fprintf(out, "  socket   %s (short-circuit reads)\n", wcfg.DomainSocket)
			}
			if fuseMount != "" {
				fc, err := client.New(client.Config{MasterAddresses: []string{m.Addr()}, Node: wcfg.Node, TLS: certs[security.RoleNode]})
				if err != nil {
					return err
				}
				defer fc.Close()
				srv, err := startFuse(ctx, &fuseFlags{mountPoint: fuseMount, path: "/", attrTimeout: time.Second}, fc)
				if err != nil {
					return fmt.Errorf("mount FUSE at %s: %w", fuseMount, err)
				}
				defer srv.Unmount()
				fmt.Fprintf(out, "  FUSE     %s (POSIX view of /)\n", srv.MountPoint())
			}
			fmt.Fprintf(out, "  UFS /    %s\n  state    %s\n", ufsURI, abs)
			if certs != nil {
				fmt.Fprintf(out, "  TLS      mTLS, CA and certificates in %s (CLI: --tls-dir %s)\n", filepath.Join(abs, "tls"), filepath.Join(abs, "tls", string(security.RoleAdmin)))
			} else {
				fmt.Fprintf(out, "  TLS      off (--no-tls): any local process can act as any component\n")
			}
			fmt.Fprintf(out, "Try: alcove fs copyFromLocal FILE /FILE && alcove fs stat /FILE && alcove fsadmin report capacity\n")
			<-ctx.Done()
			klog.InfoS("Shutting down")
			// The job tier stops first: no task is left running on a draining worker.
			jerr := errors.Join(jw.Close(), jm.Close())
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wcfg.DrainTimeout)
			derr := w.Drain(dctx)
			cancel()
			if derr != nil {
				klog.ErrorS(derr, "Worker drain incomplete")
			}
			if err := errors.Join(jerr, w.Close(), m.Close()); err != nil {
				return fmt.Errorf("shut down: %w", err)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.host, "host", "127.0.0.1", "address to bind and advertise")
	cmd.Flags().StringVar(&dir, "dir", "./alcove-data", "state directory (journal, metadata, default UFS)")
	cmd.Flags().StringVar(&ufsURI, "ufs", "", "UFS URI mounted at / (default DIR/ufs), e.g. s3://bucket/prefix")
	cmd.Flags().StringArrayVar(&ufsOptions, "ufs-option", nil, "root UFS option KEY=VALUE (repeatable), e.g. alluxio.underfs.s3.endpoint=http://127.0.0.1:9000; credentials: prefer AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
	cmd.Flags().IntVar(&masterPort, "master-port", meta.MasterRPCPort, "master RPC port")
	cmd.Flags().IntVar(&masterWebPort, "master-web-port", meta.MasterWebPort, "master web port")
	cmd.Flags().IntVar(&jobPort, "job-master-port", meta.JobMasterRPCPort, "job master RPC port")
	cmd.Flags().IntVar(&jobWebPort, "job-master-web-port", meta.JobMasterWebPort, "job master web port")
	jf.register(cmd, "job-worker-")
	cmd.Flags().BoolVar(&noTLS, "no-tls", false, "run without TLS (plaintext, unauthenticated components)")
	cmd.Flags().StringVar(&fuseMount, "fuse-mount", "", "also mount the namespace here with a FUSE daemon (needs root or /dev/fuse access)")
	return cmd
}

// localTLS makes (first start) or reuses the throwaway CA and per-role
// certificates of alcove local under dir/tls, and loads them; nil when off.
func localTLS(dir, host string, off bool) (map[security.Role]*security.Source, error) {
	if off {
		return nil, nil
	}
	tdir := filepath.Join(dir, "tls")
	if err := security.EnsureLocal(tdir, host); err != nil {
		return nil, fmt.Errorf("create local certificates: %w", err)
	}
	out := map[security.Role]*security.Source{}
	for _, r := range security.Roles {
		s, err := security.Load(filepath.Join(tdir, string(r)), r)
		if err != nil {
			return nil, err
		}
		out[r] = s
	}
	return out, nil
}
