package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/alcove-io/alcove/engine/security"
)

// `alcove certs kube-secrets` keeps the cluster CA and one certificate per
// role in Secrets of a namespace: the Helm chart runs it from a
// pre-install/pre-upgrade hook Job (Helm's genSignedCert cannot write the
// alcove://role/ URI SANs). Secrets of type kubernetes.io/tls with tls.crt,
// tls.key and ca.crt: a mounted Secret is a --tls-dir, and the CA Secret is
// what a cert-manager CA Issuer reads.

const (
	// renewBefore: a certificate expiring sooner is re-issued.
	renewBefore = 30 * 24 * time.Hour
	// secretCA names the CA Secret: <prefix>-tls-ca.
	secretCA = "ca"
	// secretLabel marks the Secrets this command manages.
	secretLabel = "app.kubernetes.io/managed-by"
	secretOwner = "alcove-certs"
)

type kubeSecrets struct {
	cs       kubernetes.Interface
	ns       string
	prefix   string
	validity time.Duration
	out      io.Writer // one line per Secret: its name and what was done (never key material)
}

func newKubeSecretsCmd() *cobra.Command {
	var (
		kubeconfig, ns string
		roles          []string
		dns            []string
		k              kubeSecrets
	)
	cmd := &cobra.Command{
		Use:   "kube-secrets",
		Short: "Get or create the cluster CA and one certificate per role in Kubernetes Secrets <prefix>-tls-<role> (the Helm chart's hook)",
		Long: `Keeps <prefix>-tls-ca (the cluster CA) and <prefix>-tls-<role> for each --role
in the namespace: Secrets of type kubernetes.io/tls with tls.crt, tls.key and
ca.crt, usable as --tls-dir when mounted. Existing Secrets are kept; one is
(re-)issued only when it is missing or invalid, is not signed by the CA, lacks a
DNS name asked for, or expires within 30 days. A new CA re-issues every
certificate. Keys are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if k.prefix == "" {
				return usagef("--prefix is needed (the chart's full name)")
			}
			if ns == "" {
				ns = inClusterNamespace()
			}
			if ns == "" {
				return usagef("--namespace is needed outside a pod")
			}
			reqs, err := roleRequests(k.prefix, roles, dns)
			if err != nil {
				return err
			}
			rc, err := kubeRESTConfig(kubeconfig, "alcove-certs")
			if err != nil {
				return err
			}
			if k.cs, err = kubernetes.NewForConfig(rc); err != nil {
				return fmt.Errorf("create Kubernetes client: %w", err)
			}
			k.ns, k.out = ns, cmd.OutOrStdout()
			return k.ensure(cmd.Context(), reqs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&ns, "namespace", "", "namespace of the Secrets (default: the pod's own)")
	f.StringVar(&k.prefix, "prefix", "", "Secret name prefix: <prefix>-tls-ca, <prefix>-tls-<role>")
	f.StringSliceVar(&roles, "role", nil, fmt.Sprintf("roles to keep a certificate for (repeatable), of %v", security.Roles))
	f.StringArrayVar(&dns, "dns", nil, "ROLE=NAME: a DNS name of that role's certificate (repeatable)")
	f.DurationVar(&k.validity, "validity", security.DefaultValidity, "how long an issued certificate is valid")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// inClusterNamespace is the pod's namespace from its ServiceAccount mount.
func inClusterNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// roleRequests turns --role and --dns into one request per role, named
// <prefix>-<role>.
func roleRequests(prefix string, roles, dns []string) ([]security.IssueRequest, error) {
	var reqs []security.IssueRequest
	at := map[security.Role]int{}
	for _, r := range roles {
		role := security.Role(r)
		if !role.Valid() {
			return nil, usagef("--role %q: use one of %v", r, security.Roles)
		}
		if _, dup := at[role]; dup {
			return nil, usagef("--role %s is given twice", r)
		}
		at[role] = len(reqs)
		reqs = append(reqs, security.IssueRequest{Role: role, Name: prefix + "-" + r})
	}
	for _, d := range dns {
		r, name, ok := strings.Cut(d, "=")
		i, known := at[security.Role(r)]
		if !ok || name == "" || !known {
			return nil, usagef("--dns %q: use ROLE=NAME with a ROLE given by --role", d)
		}
		reqs[i].DNSNames = append(reqs[i].DNSNames, name)
	}
	return reqs, nil
}

func (k *kubeSecrets) name(suffix string) string { return k.prefix + "-tls-" + suffix }

// ensure gets or creates the CA Secret, then every role's Secret.
func (k *kubeSecrets) ensure(ctx context.Context, reqs []security.IssueRequest) error {
	ca, err := k.ensureCA(ctx)
	if err != nil {
		return err
	}
	for _, req := range reqs {
		req.Validity = k.validity
		name := k.name(string(req.Role))
		sec, err := k.get(ctx, name)
		if err != nil {
			return err
		}
		why := "missing"
		if sec != nil {
			p := security.Pair{Cert: sec.Data[corev1.TLSCertKey], Key: sec.Data[corev1.TLSPrivateKeyKey], CA: sec.Data[security.CAFile]}
			err := ca.Check(p, req, renewBefore)
			if err == nil {
				fmt.Fprintf(k.out, "%s: kept\n", name)
				continue
			}
			why = err.Error()
		}
		p, err := ca.Issue(req)
		if err != nil {
			return err
		}
		if err := k.put(ctx, name, sec, p); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "%s: issued for role %s (%s)\n", name, req.Role, why)
	}
	return nil
}

// ensureCA returns the CA of the CA Secret, making a new one when it is
// missing, invalid or expires within renewBefore (every certificate is
// then re-issued, as none is signed by the new CA).
func (k *kubeSecrets) ensureCA(ctx context.Context) (*security.CA, error) {
	name := k.name(secretCA)
	sec, err := k.get(ctx, name)
	if err != nil {
		return nil, err
	}
	why := "missing"
	if sec != nil {
		ca, err := security.ParseCA(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
		switch {
		case err != nil:
			why = err.Error()
		case time.Until(ca.NotAfter()) < renewBefore:
			why = "it expires within " + renewBefore.String()
		default:
			fmt.Fprintf(k.out, "%s: kept\n", name)
			return ca, nil
		}
	}
	ca, err := security.NewCA(k.prefix + " cluster CA")
	if err != nil {
		return nil, err
	}
	// The CA's own Secret in cert-manager's CA Issuer layout.
	if err := k.put(ctx, name, sec, security.Pair{Cert: ca.CertPEM, Key: ca.KeyPEM, CA: ca.CertPEM}); err != nil {
		return nil, err
	}
	fmt.Fprintf(k.out, "%s: new cluster CA (%s)\n", name, why)
	return ca, nil
}

// get returns the Secret, or nil when there is none.
func (k *kubeSecrets) get(ctx context.Context, name string) (*corev1.Secret, error) {
	sec, err := k.cs.CoreV1().Secrets(k.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s/%s: %w", k.ns, name, err)
	}
	return sec, nil
}

// put creates the Secret, or updates old (its resourceVersion guards
// against a concurrent writer).
func (k *kubeSecrets) put(ctx context.Context, name string, old *corev1.Secret, p security.Pair) error {
	data := map[string][]byte{corev1.TLSCertKey: p.Cert, corev1.TLSPrivateKeyKey: p.Key, security.CAFile: p.CA}
	if old == nil {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.ns, Labels: map[string]string{secretLabel: secretOwner}},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if _, err := k.cs.CoreV1().Secrets(k.ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Secret %s/%s: %w", k.ns, name, err)
		}
		return nil
	}
	if old.Type != corev1.SecretTypeTLS {
		return fmt.Errorf("update Secret %s/%s: it is of type %s, not %s: delete it to let it be re-created", k.ns, name, old.Type, corev1.SecretTypeTLS)
	}
	sec := old.DeepCopy()
	sec.Data = data
	if _, err := k.cs.CoreV1().Secrets(k.ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Secret %s/%s: %w", k.ns, name, err)
	}
	return nil
}
