package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alcove-io/alcove/engine/security"
)

// The tenants of tenantIsolation: namespace A owns a volume, B is a
// neighbour on the same node.
const (
	tenantA = "e2e-tenant-a"
	tenantB = "e2e-tenant-b"
	// tenantCA is the ConfigMap with the cluster CA (ca.crt only: public)
	// that an application namespace holds, as SECURITY.md tells users.
	tenantCA = "alcove-ca"
)

// tenantPod runs the alcove CLI as an application would: no certificate,
// the namespace's default ServiceAccount token projected with audience
// alcove (ALCOVE_TOKEN_FILE), the cluster CA (ALCOVE_TLS_DIR), ALCOVE_NODE
// and the node's domain socket through the driver's inline volume. It runs
// on node, where the volume's blocks are cached.
func tenantPod(name, node, script string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  nodeName: %s
  automountServiceAccountToken: false
  containers:
  - name: main
    image: localhost/alcove:e2e
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    env:
    - {name: ALCOVE_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: ALCOVE_MASTER, value: "%s-master-0.%s-master.%s.svc.cluster.local:19998"}
    - {name: ALCOVE_TLS_DIR, value: /etc/alcove-ca}
    - {name: ALCOVE_TOKEN_FILE, value: /var/run/secrets/alcove/token}
    volumeMounts:
    - {name: alcove-token, mountPath: /var/run/secrets/alcove, readOnly: true}
    - {name: alcove-ca, mountPath: /etc/alcove-ca, readOnly: true}
    - {name: socket, mountPath: /var/lib/alcove/worker}
  volumes:
  - name: alcove-token
    projected:
      sources:
      - serviceAccountToken: {audience: alcove, expirationSeconds: 3600, path: token}
  - name: alcove-ca
    configMap: {name: %s}
  - name: socket
    csi: {driver: csi.alcove.io, volumeAttributes: {type: domain-socket}}
`, name, node, script, release, release, releaseNS, tenantCA)
}

// tenantIsolation (issue 13): a file written through a PVC of namespace A
// is read by A's pod with its own ServiceAccount token, and B's pod, with
// its token and the same node's domain socket, gets PermissionDenied from
// the master. SubjectAccessReviews show B's account cannot read A's
// Secrets and the masters' account may create tokenreviews only.
func (c *cluster) tenantIsolation(ctx context.Context) error {
	for _, ns := range []string{tenantA, tenantB} {
		if err := c.tenantNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// Kept apart only until uninstall, which waits for namespaces being
	// deleted (their volumes need the node plugin).
	defer func() {
		for _, ns := range []string{tenantA, tenantB} {
			_, _ = c.kubectl(context.Background(), "delete", "namespace", ns, "--wait=false")
		}
	}()
	content := fmt.Sprintf("tenant A's data %d", rand.Int63())
	writer := pod("writer", "busybox", fmt.Sprintf("echo %q > /data/secret.txt\ncat /data/secret.txt\necho WRITER-OK", content), false)
	if _, err := c.run(ctx, pvcYAML+"---\n"+writer, "kubectl", "apply", "-n", tenantA, "-f", "-"); err != nil {
		return err
	}
	if err := c.waitPod(ctx, tenantA, "writer", true, 3*time.Minute); err != nil {
		return err
	}
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(tenantA).Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		return err
	}
	node, err := c.podNode(ctx, tenantA, "writer")
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`if out=$(alcove fs cat /volumes/%s/secret.txt 2>&1); then echo "READ-OK: $out"; else echo "READ-FAILED: $out"; fi`, pvc.Spec.VolumeName)
	outs := map[string]string{}
	for _, ns := range []string{tenantA, tenantB} {
		if _, err := c.run(ctx, tenantPod("cat", node, script), "kubectl", "apply", "-n", ns, "-f", "-"); err != nil {
			return err
		}
	}
	for _, ns := range []string{tenantA, tenantB} {
		if err := c.waitPod(ctx, ns, "cat", true, 2*time.Minute); err != nil {
			return err
		}
		if outs[ns], err = c.logs(ctx, ns, "cat"); err != nil {
			return err
		}
		fmt.Print(indent(ns + ": " + strings.TrimSpace(outs[ns])))
	}
	var errs []string
	if !strings.Contains(outs[tenantA], "READ-OK: "+content) {
		errs = append(errs, fmt.Sprintf("%s's pod did not read its volume's file: %q", tenantA, outs[tenantA]))
	}
	// The master's refusal (engine/master/perm.go), naming B's user; not an
	// authentication or transport failure.
	b := strings.ToLower(outs[tenantB])
	if !strings.Contains(b, "read-failed") || !(strings.Contains(b, "permission denied") || strings.Contains(b, "permissiondenied")) ||
		!strings.Contains(b, "system:serviceaccount:"+tenantB+":default") || strings.Contains(b, content) {
		errs = append(errs, fmt.Sprintf("%s's pod: %q, want PermissionDenied naming system:serviceaccount:%s:default", tenantB, outs[tenantB], tenantB))
	}
	allowed, denied, err := askRBAC(ctx, tenantRBACChecks, func(args ...string) (string, error) { return c.kubectl(ctx, args...) })
	fmt.Printf("      kubectl auth can-i: %d grants allowed, %d denied as expected\n", allowed, denied)
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// tenantRBACChecks: a tenant's account reaches nothing of another tenant
// or of the release, and the masters' account only reviews tokens.
var tenantRBACChecks = []canI{
	{"system:serviceaccount:" + tenantB + ":default", "get", "secrets", tenantA, false},
	{"system:serviceaccount:" + tenantB + ":default", "list", "secrets", tenantA, false},
	{"system:serviceaccount:" + tenantB + ":default", "get", "persistentvolumeclaims", tenantA, false},
	{"system:serviceaccount:" + tenantB + ":default", "get", "secrets " + release + "-tls-ca", releaseNS, false},
	{"system:serviceaccount:" + tenantA + ":default", "get", "secrets", tenantA, false},
	{"master", "create", "tokenreviews.authentication.k8s.io", "", true},
	{"master", "get", "secrets", tenantA, false},
	{"master", "get", "secrets", releaseNS, false},
	{"master", "list", "pods", "", false},
	{"master", "create", "subjectaccessreviews.authorization.k8s.io", "", false},
	{"master", "create", "serviceaccounts/token", tenantA, false},
}

// tenantNamespace makes an application namespace: its default
// ServiceAccount (made by the controller manager) and the ConfigMap with
// the cluster CA copied from the release's CA Secret (ca.crt only).
func (c *cluster) tenantNamespace(ctx context.Context, ns string) error {
	_, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := poll(ctx, 500*time.Millisecond, "ServiceAccount "+ns+"/default", func() (bool, error) {
		_, err := c.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return err
	}
	s, err := c.tlsSecret(ctx, "ca")
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tenantCA, Namespace: ns},
		Data: map[string]string{security.CAFile: string(s.Data[security.CAFile])}}
	if _, err := c.cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
