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
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/job"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/worker"
)

func newLocalCmd(g *globals) *cobra.Command {
	var f workerFlags
	var dir, ufsURI string
	var masterPort, masterWebPort int
	var fuseMount string
	var jf jobWorkerFlags
	var jobPort, jobWebPort int
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run master, worker and job service on this machine, in the foreground",
		Long: `Runs an all-in-one Alcove on loopback: a master (RPC 19998, web 19999), a
worker (RPC 29999, web 30000) with a MEM tier on /dev/shm, and the job
service: a job master (RPC 20001, web 20002) and a job worker (RPC 30001,
web 30003). State lives under
--dir; restarting on the same --dir resumes the same namespace. The UFS
mounted at / is DIR/ufs unless --ufs names another. Ctrl-C stops it cleanly.`,
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
			if ufsURI == "" {
				ufsURI = filepath.Join(abs, "ufs")
				if err := os.MkdirAll(ufsURI, 0o755); err != nil {
					return fmt.Errorf("create UFS directory: %w", err)
				}
			}
			if err := os.MkdirAll(filepath.Join(abs, "worker"), 0o755); err != nil {
				return fmt.Errorf("create state directory: %w", err)
			}
			m, err := master.New(master.Config{
				Dir:        filepath.Join(abs, "master"),
				Address:    hostPort(f.host, masterPort),
				WebAddress: hostPort(f.host, masterWebPort),
				RootUFS:    ufsURI,
			})
			if err != nil {
				return err
			}
			if err := m.Start(ctx); err != nil {
				return fmt.Errorf("start master: %w", err)
			}
			defer m.Close()
			wcfg, err := f.config(cmd, g, abs, m.Addr())
			if err != nil {
				return err
			}
			w, err := worker.New(wcfg)
			if err != nil {
				return err
			}
			if err := w.Start(ctx); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
			defer w.Close()
			jm, err := job.NewMaster(job.MasterConfig{Dir: filepath.Join(abs, "job"), Address: hostPort(f.host, jobPort),
				WebAddress: hostPort(f.host, jobWebPort), MasterAddresses: []string{m.Addr()}})
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
				fc, err := client.New(client.Config{MasterAddresses: []string{m.Addr()}, Node: wcfg.Node})
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
	cmd.Flags().StringVar(&ufsURI, "ufs", "", "UFS URI mounted at / (default DIR/ufs)")
	cmd.Flags().IntVar(&masterPort, "master-port", 19998, "master RPC port")
	cmd.Flags().IntVar(&masterWebPort, "master-web-port", 19999, "master web port")
	cmd.Flags().IntVar(&jobPort, "job-master-port", 20001, "job master RPC port")
	cmd.Flags().IntVar(&jobWebPort, "job-master-web-port", 20002, "job master web port")
	jf.register(cmd, "job-worker-")
	cmd.Flags().StringVar(&fuseMount, "fuse-mount", "", "also mount the namespace here with a FUSE daemon (needs root or /dev/fuse access)")
	return cmd
}
