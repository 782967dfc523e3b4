package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// The chart runs with mTLS (tls.enabled): the hook made the Secrets
// <release>-tls-<role>; the tests' own CLI calls in pods of the test
// namespace use the admin certificate (adminTLSSecret), and the checks
// below show the master refuses what it must.

// adminTLSSecret is the copy of the release's admin certificate in the
// test namespace, which pods there mount to run the CLI.
const adminTLSSecret = "alcove-admin-tls"

// tlsRoles are the Secrets the chart's hook makes with the e2e values.
var tlsRoles = []string{"ca", "master", "worker", "admin", "job", "node"}

// tlsSecret reads the release's Secret of a role through the kube API.
func (c *cluster) tlsSecret(ctx context.Context, role string) (*corev1.Secret, error) {
	s, err := c.cs.CoreV1().Secrets(releaseNS).Get(ctx, release+"-tls-"+role, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get the %s TLS Secret: %w", role, err)
	}
	return s, nil
}

// tlsDir writes a role's Secret into a directory (as a mounted Secret
// would be) and loads it.
func (c *cluster) tlsDir(ctx context.Context, role string) (*security.Source, error) {
	s, err := c.tlsSecret(ctx, role)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.t.TempDir(), role)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, security.CAFile} {
		if err := os.WriteFile(filepath.Join(dir, k), s.Data[k], 0o600); err != nil {
			return nil, err
		}
	}
	return security.Load(dir, security.Role(role))
}

// copyAdminTLS puts the release's admin certificate into the test
// namespace as adminTLSSecret (replacing an older copy).
func (c *cluster) copyAdminTLS(ctx context.Context) error {
	s, err := c.tlsSecret(ctx, "admin")
	if err != nil {
		return err
	}
	cp := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: adminTLSSecret, Namespace: testNS}, Type: s.Type, Data: s.Data}
	err = c.cs.CoreV1().Secrets(testNS).Delete(ctx, adminTLSSecret, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	_, err = c.cs.CoreV1().Secrets(testNS).Create(ctx, cp, metav1.CreateOptions{})
	return err
}

// adminTLSPod adds the admin certificate to a pod of pod(): the Secret
// mounted at /etc/alcove-tls and ALCOVE_TLS_DIR (what --tls-dir reads).
func adminTLSPod(yaml string) string {
	yaml = replaceOnce(yaml, "    volumeMounts:\n", "    volumeMounts:\n    - {name: admin-tls, mountPath: /etc/alcove-tls, readOnly: true}\n")
	yaml = replaceOnce(yaml, "  volumes:\n", "  volumes:\n  - name: admin-tls\n    secret: {secretName: "+adminTLSSecret+"}\n")
	return yaml
}

// adminTLSEnv is the pod() env entry that points the CLI at the admin certificate.
const adminTLSEnv = `, {name: ALCOVE_TLS_DIR, value: /etc/alcove-tls}`

// tlsEnforced: a call to the master without a client certificate and
// without a valid ServiceAccount token, or in plaintext, is refused; a
// worker refuses TLS without a client certificate; a worker certificate gets through the handshake
// (an open RPC answers on the same connection) but an admin RPC is
// PermissionDenied; the admin certificate may call it.
func (c *cluster) tlsEnforced(ctx context.Context) error {
	p, err := c.cs.CoreV1().Pods(releaseNS).Get(ctx, release+"-master-0", metav1.GetOptions{})
	if err != nil {
		return err
	}
	addr := meta.HostPort(p.Status.PodIP, meta.MasterRPCPort)
	call := func(creds credentials.TransportCredentials, admin bool, token ...string) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		for _, t := range token {
			cctx = security.OutgoingToken(cctx, t)
		}
		m := apiv1.NewMetaMasterClient(conn)
		if admin {
			_, err = m.GetQuorumInfo(cctx, &apiv1.GetQuorumInfoRequest{})
		} else {
			_, err = m.GetMasterInfo(cctx, &apiv1.GetMasterInfoRequest{})
		}
		return err
	}
	var errs []string
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec // a client without a certificate, on purpose
	// The masters take ServiceAccount tokens (auth.kubernetes): a caller
	// without a certificate gets through TLS and is refused per call unless
	// its token passes a TokenReview.
	err = call(credentials.NewTLS(noCert), false)
	if status.Code(err) != codes.Unauthenticated {
		errs = append(errs, fmt.Sprintf("gRPC without a client certificate or token: %v, want Unauthenticated", err))
	}
	fmt.Printf("      master, no client certificate, no token: %v\n", err)
	err = call(credentials.NewTLS(noCert), false, "not-a-serviceaccount-token")
	if status.Code(err) != codes.Unauthenticated {
		errs = append(errs, fmt.Sprintf("gRPC without a client certificate, forged token: %v, want Unauthenticated", err))
	}
	fmt.Printf("      master, no client certificate, forged token: %v\n", err)
	// Workers require a certificate: TLS 1.3 finishes the client's side of
	// the handshake, then the worker's alert ends the connection, read here
	// on a raw TLS connection (gRPC reports whatever its transport hit
	// first: a broken pipe, EOF).
	workers, err := c.cs.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=worker"})
	if err != nil {
		return err
	}
	if len(workers.Items) == 0 {
		return fmt.Errorf("no worker pods in %s", releaseNS)
	}
	workerAddr := meta.HostPort(workers.Items[0].Status.PodIP, meta.WorkerRPCPort)
	raw, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", workerAddr, noCert)
	if err == nil {
		_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		errs = append(errs, fmt.Sprintf("TLS to a worker without a client certificate: %v, want the alert certificate required", err))
	}
	fmt.Printf("      worker, TLS without a client certificate: %v\n", err)
	if err = call(insecure.NewCredentials(), false); status.Code(err) != codes.Unavailable {
		errs = append(errs, fmt.Sprintf("plaintext: %v, want Unavailable", err))
	}
	fmt.Printf("      plaintext: %v\n", err)
	worker, err := c.tlsDir(ctx, "worker")
	if err != nil {
		return err
	}
	if err := call(worker.ClientCredentials(security.RoleMaster), false); err != nil {
		errs = append(errs, fmt.Sprintf("worker certificate, GetMasterInfo (open to every role): %v", err))
	}
	err = call(worker.ClientCredentials(security.RoleMaster), true)
	if status.Code(err) != codes.PermissionDenied {
		errs = append(errs, fmt.Sprintf("worker certificate, GetQuorumInfo (admin): %v, want PermissionDenied", err))
	}
	fmt.Printf("      worker certificate, admin RPC: %v\n", err)
	admin, err := c.tlsDir(ctx, "admin")
	if err != nil {
		return err
	}
	if err := call(admin.ClientCredentials(security.RoleMaster), true); status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated {
		errs = append(errs, fmt.Sprintf("admin certificate, GetQuorumInfo: %v", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// tlsSerials are the serial numbers of the release's TLS Secrets.
func (c *cluster) tlsSerials(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range tlsRoles {
		s, err := c.tlsSecret(ctx, r)
		if err != nil {
			return nil, err
		}
		if out[r], err = secretSerial(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// secretSerial is the serial number of a TLS Secret's certificate.
func secretSerial(s *corev1.Secret) (string, error) {
	b, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	if b == nil {
		return "", fmt.Errorf("%s: no certificate in tls.crt", s.Name)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.Name, err)
	}
	return cert.SerialNumber.String(), nil
}

// tlsSecretsIdempotent: `helm upgrade` (its hook runs again) keeps every
// certificate (same serials); with the admin Secret deleted, the next
// upgrade issues it again and keeps the others (rotation).
func (c *cluster) tlsSecretsIdempotent(ctx context.Context) error {
	values, err := c.valuesFile()
	if err != nil {
		return err
	}
	upgrade := func() error {
		_, err := c.run(ctx, "", "helm", "upgrade", release, c.chart(), "-n", releaseNS, "-f", values, "--wait", "--timeout", "180s")
		return err
	}
	changedAfter := func(before map[string]string) ([]string, error) {
		after, err := c.tlsSerials(ctx)
		if err != nil {
			return nil, err
		}
		var changed []string
		for _, r := range tlsRoles {
			if before[r] != after[r] {
				changed = append(changed, r)
			}
		}
		return changed, nil
	}
	before, err := c.tlsSerials(ctx)
	if err != nil {
		return err
	}
	if err := upgrade(); err != nil {
		return err
	}
	changed, err := changedAfter(before)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		return fmt.Errorf("helm upgrade re-issued %v", changed)
	}
	fmt.Printf("      helm upgrade kept all %d TLS Secrets (same serials)\n", len(tlsRoles))
	if err := c.cs.CoreV1().Secrets(releaseNS).Delete(ctx, release+"-tls-admin", metav1.DeleteOptions{}); err != nil {
		return err
	}
	if err := upgrade(); err != nil {
		return err
	}
	if changed, err = changedAfter(before); err != nil {
		return err
	}
	if !slices.Equal(changed, []string{"admin"}) {
		return fmt.Errorf("after deleting the admin Secret, helm upgrade re-issued %v, want [admin]", changed)
	}
	fmt.Printf("      deleted admin Secret re-issued by the next helm upgrade, the others kept\n")
	return nil
}
