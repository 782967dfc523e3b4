// Command alcove is the one Alcove binary: daemons (local, master, worker,
// ...), the filesystem shell (fs) and admin reports (fsadmin).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
)

// version is set by the build (-ldflags -X main.version=...).
var version = "v0.1.0-dev"

// globals are flags every command shares.
type globals struct {
	master    string
	jobMaster string
	confFile  string
	// tlsDirFlag is --tls-dir; read it through tlsDir().
	tlsDirFlag string
	props      *conf.Properties
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	g := &globals{}
	root := newRoot(g)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		name := strings.TrimPrefix(cmd.CommandPath(), "alcove ")
		fmt.Fprintf(os.Stderr, "alcove %s: %s\n", name, oneLine(err))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// usageError marks bad command-line input (exit code 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "alcove",
		Short:         "Alcove: a data-orchestration cache for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			p, err := conf.Load(g.confFile)
			if err != nil {
				return err
			}
			for _, w := range p.Warnings {
				klog.Warning(w)
			}
			g.props = p
			master.Version = version
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	root.PersistentFlags().AddGoFlag(fs.Lookup("v"))
	root.PersistentFlags().StringVar(&g.master, "master", "", "master address HOST:PORT[,HOST:PORT...] (env ALCOVE_MASTER; default from the properties file, else 127.0.0.1:19998)")
	root.PersistentFlags().StringVar(&g.jobMaster, "job-master", "", "job master address HOST:PORT (env ALCOVE_JOB_MASTER; default alluxio.job.master.hostname, else the master's host on port 20001)")
	root.PersistentFlags().StringVar(&g.confFile, "conf", "", "properties file (default: $ALCOVE_CONF_DIR/alcove-site.properties, ./conf/alcove-site.properties, /etc/alcove/alcove-site.properties)")
	root.PersistentFlags().StringVar(&g.tlsDirFlag, "tls-dir", "", "this process's certificate directory: tls.crt, tls.key, ca.crt (env ALCOVE_TLS_DIR; property alcove.security.tls.dir); empty turns TLS off")
	root.AddCommand(newCertsCmd(), newFsCmd(g), newFsadminCmd(g), newLocalCmd(g), newMasterCmd(g), newWorkerCmd(g), newFormatCmd(g), newRunTestsCmd(g), newCSICmd(g), newExtenderCmd(g), newFuseCmd(g), newJobMasterCmd(g), newJobWorkerCmd(g), newJobCmd(g), newVersionCmd())
	return root
}

// masterAddresses resolves --master, then ALCOVE_MASTER, then the
// properties file (alluxio.master.rpc.addresses, else alluxio.master.hostname),
// then the default.
func (g *globals) masterAddresses() []string {
	s := g.master
	if s == "" {
		s = os.Getenv("ALCOVE_MASTER")
	}
	if s == "" && g.props != nil {
		s = g.props.String(conf.MasterRPCAddresses, "")
	}
	if s == "" && g.props != nil {
		if h, ok := g.props.Get(conf.MasterHostname); ok {
			s = meta.HostPort(h, g.props.Int(conf.MasterRPCPort, meta.MasterRPCPort))
		}
	}
	if s == "" {
		s = meta.HostPort("127.0.0.1", meta.MasterRPCPort)
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if !strings.Contains(a, ":") {
				a = meta.HostPort(a, meta.MasterRPCPort)
			}
			out = append(out, a)
		}
	}
	return out
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "alcove %s\n", version)
		},
	}
}
