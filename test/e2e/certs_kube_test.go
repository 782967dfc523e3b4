package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/test/testbin"
)

// TestCertsKubeSecrets runs `alcove certs kube-secrets` (the chart's hook)
// against a real kube-apiserver: it creates the CA and role Secrets, keeps
// them on a re-run (same serials), and re-issues exactly the one that is
// missing, corrupt or lacks a DNS name asked for; a Secret mounted as a
// --tls-dir loads with its role; keys never reach the output.
func TestCertsKubeSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the real control plane test")
	}
	cp := startControlPlane(t, k8sBins(t))
	bin := testbin.Alcove(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "certs"
	if _, err := cp.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	master0 := "rel-master-0.rel-master.certs.svc.cluster.local"
	run := func(dns ...string) string {
		t.Helper()
		args := []string{"certs", "kube-secrets", "--kubeconfig", cp.kubeconfig, "--namespace", ns, "--prefix", "rel",
			"--role", "master,worker,admin"}
		for _, d := range dns {
			args = append(args, "--dns", d)
		}
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kube-secrets: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "PRIVATE KEY") {
			t.Fatalf("key material in the output:\n%s", out)
		}
		return string(out)
	}
	serials := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, s := range []string{"ca", "master", "worker", "admin"} {
			sec, err := cp.cs.CoreV1().Secrets(ns).Get(ctx, "rel-tls-"+s, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sec.Type != corev1.SecretTypeTLS {
				t.Fatalf("%s: type %s", sec.Name, sec.Type)
			}
			if got[s], err = secretSerial(sec); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	changed := func(before, after map[string]string) []string {
		var out []string
		for _, s := range []string{"ca", "master", "worker", "admin"} {
			if before[s] != after[s] {
				out = append(out, s)
			}
		}
		return out
	}
	out := run("master=" + master0)
	t.Logf("first run:\n%s", out)
	serials() // every Secret is there, of type kubernetes.io/tls

	// The master's Secret, written out as a volume would be, is a --tls-dir.
	sec, err := cp.cs.CoreV1().Secrets(ns).Get(ctx, "rel-tls-master", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for k, v := range sec.Data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, err := security.Load(dir, security.RoleMaster)
	if err != nil {
		t.Fatalf("the master Secret as --tls-dir: %v", err)
	}
	t.Logf("master Secret loads with role %s", src.Role())

	for _, step := range []struct {
		name   string
		before func()
		dns    []string
		want   []string // Secrets re-issued
	}{
		{"re-run keeps all", nil, []string{"master=" + master0}, nil},
		{"missing worker Secret", func() {
			if err := cp.cs.CoreV1().Secrets(ns).Delete(ctx, "rel-tls-worker", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"master=" + master0}, []string{"worker"}},
		{"corrupt admin key", func() {
			s, err := cp.cs.CoreV1().Secrets(ns).Get(ctx, "rel-tls-admin", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.Data[corev1.TLSPrivateKeyKey] = []byte("garbage")
			if _, err := cp.cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"master=" + master0}, []string{"admin"}},
		{"a master more", nil, []string{"master=" + master0, "master=rel-master-1.rel-master.certs.svc.cluster.local"}, []string{"master"}},
		{"new CA re-issues all", func() {
			if err := cp.cs.CoreV1().Secrets(ns).Delete(ctx, "rel-tls-ca", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"master=" + master0}, []string{"ca", "master", "worker", "admin"}},
	} {
		before := serials()
		if step.before != nil {
			step.before()
		}
		out := run(step.dns...)
		got := changed(before, serials())
		if strings.Join(got, ",") != strings.Join(step.want, ",") {
			t.Fatalf("%s: re-issued %v, want %v\n%s", step.name, got, step.want, out)
		}
		t.Logf("%s: re-issued %v", step.name, got)
	}
}
