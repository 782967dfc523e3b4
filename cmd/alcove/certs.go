package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/security"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Cluster CA and component certificates (mTLS between Alcove components)",
	}
	var caDir, cn string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the cluster CA (ca.crt, ca.key) in --ca-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := security.InitCA(caDir, cn); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster CA created in %s (keep %s secret)\n", caDir, security.CAKeyFile)
			return nil
		},
	}
	initCmd.Flags().StringVar(&caDir, "dir", "alcove-ca", "directory for ca.crt and ca.key")
	initCmd.Flags().StringVar(&cn, "cn", "", "CA common name (default \"alcove cluster CA\")")
	var (
		role, name, out string
		dns, ips        []string
		validity        time.Duration
	)
	issueCmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate for a component: tls.crt, tls.key and ca.crt in --out (a cert-manager Secret's layout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := security.IssueRequest{Role: security.Role(role), Name: name, DNSNames: dns, Validity: validity}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usagef("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			if out == "" {
				out = name
			}
			if err := security.Issue(caDir, out, req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s certificate for %q in %s (use it with --tls-dir %s)\n", role, name, out, out)
			return nil
		},
	}
	issueCmd.Flags().StringVar(&caDir, "ca-dir", "alcove-ca", "directory of the cluster CA (alcove certs init)")
	issueCmd.Flags().StringVar(&role, "role", "", fmt.Sprintf("component role, one of %v", security.Roles))
	issueCmd.Flags().StringVar(&name, "name", "", "certificate common name (host, pod or user name)")
	issueCmd.Flags().StringVar(&out, "out", "", "output directory (default: the name)")
	issueCmd.Flags().StringSliceVar(&dns, "dns", nil, "DNS names (repeatable)")
	issueCmd.Flags().StringSliceVar(&ips, "ip", nil, "IP addresses (repeatable)")
	issueCmd.Flags().DurationVar(&validity, "validity", security.DefaultValidity, "how long the certificate is valid")
	_ = issueCmd.MarkFlagRequired("role")
	_ = issueCmd.MarkFlagRequired("name")
	cmd.AddCommand(initCmd, issueCmd, newKubeSecretsCmd())
	return cmd
}

// tlsDir resolves --tls-dir, then ALCOVE_TLS_DIR, then the properties file.
func (g *globals) tlsDir() string {
	if g.tlsDirFlag != "" {
		return g.tlsDirFlag
	}
	if d := os.Getenv("ALCOVE_TLS_DIR"); d != "" {
		return d
	}
	if g.props != nil {
		return g.props.String(conf.SecurityTLSDir, "")
	}
	return ""
}

// localAdminTLS is where `alcove local` with its default --dir keeps the
// certificate the CLI uses when nothing else is configured.
var localAdminTLS = filepath.Join("alcove-data", "tls", string(security.RoleAdmin))

// tls loads a daemon's key pair, or returns nil (TLS off) with a warning
// when none is configured. want lists the roles the daemon may run as.
func (g *globals) tls(want ...security.Role) (*security.Source, error) {
	dir := g.tlsDir()
	if dir == "" {
		klog.Warning("TLS is off (no --tls-dir): connections are neither encrypted nor authenticated; anyone who reaches the ports can act as any component (see SECURITY.md)")
		return nil, nil
	}
	return security.Load(dir, want...)
}

// clientTLS is the CLI's and node agents' certificate: as configured, else
// the admin certificate of an `alcove local` run from this directory with
// its default --dir, else none (TLS off).
func (g *globals) clientTLS() (*security.Source, error) {
	dir := g.tlsDir()
	if dir == "" {
		if _, err := os.Stat(filepath.Join(localAdminTLS, security.CertFile)); err != nil {
			return nil, nil
		}
		dir = localAdminTLS
	}
	return security.Load(dir)
}
