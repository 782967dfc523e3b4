package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/alcove-io/alcove/test/prereq"
)

// repoRoot is the module root (tests run in test/e2e).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// k8sBins builds (or finds cached) names — by default etcd, kube-apiserver
// and kube-scheduler — with hack/k8s-bins.sh and returns their directory.
// Without ALCOVE_E2E=1 a failed build skips the test (e.g. no Go module
// proxy); with it, it fails.
func k8sBins(t *testing.T, names ...string) string {
	t.Helper()
	start := time.Now()
	if len(names) == 0 {
		names = []string{"etcd", "kube-apiserver", "kube-scheduler"}
	}
	cmd := exec.Command(filepath.Join(repoRoot(t), "hack", "k8s-bins.sh"), names...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("ALCOVE_E2E") == "1" {
			t.Fatalf("build %v: %v", names, err)
		}
		prereq.Missing(t, "Kubernetes binaries %v (hack/k8s-bins.sh; ALCOVE_E2E=1 also fails): %v", names, err)
	}
	t.Logf("%v ready in %v", names, time.Since(start).Round(time.Millisecond))
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a control plane process; its output goes to a log file that is
// printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	f.Close()
	return &proc{name: name, cmd: cmd, log: logPath}
}

func (p *proc) stop(t *testing.T) {
	if p == nil || p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	if t.Failed() {
		b, _ := os.ReadFile(p.log)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("--- tail of %s log ---\n%s", p.name, b)
	}
	p.cmd = nil
}

// controlPlane is etcd + kube-apiserver on 127.0.0.1.
type controlPlane struct {
	dir, bins, kubeconfig string
	etcd, apiserver       *proc
	cs                    kubernetes.Interface
}

func startControlPlane(t *testing.T, bins string) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if out, err := exec.Command(filepath.Join(repoRoot(t), "hack", "k8s-certs.sh"), pki).CombinedOutput(); err != nil {
		t.Fatalf("certificates: %v\n%s", err, out)
	}
	cp := &controlPlane{dir: dir, bins: bins}
	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cp.etcd = startProc(t, dir, "etcd", filepath.Join(bins, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--log-level=warn")
	p := func(f string) string { return filepath.Join(pki, f) }
	cp.apiserver = startProc(t, dir, "kube-apiserver", filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/24", "--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount", "--v=1")
	t.Cleanup(func() { cp.stop(t) })
	cp.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:%d", certificate-authority: %q}
users:
- name: admin
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, apiPort, p("ca.crt"), p("admin.crt"), p("admin.key"))
	if err := os.WriteFile(cp.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 200, 400
	cp.cs = kubernetes.NewForConfigOrDie(rc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cp.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready: %v %s", err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return cp
}

// startScheduler runs kube-scheduler with config (a KubeSchedulerConfiguration).
func (cp *controlPlane) startScheduler(t *testing.T, name, config string) *proc {
	t.Helper()
	path := filepath.Join(cp.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startProc(t, cp.dir, name, filepath.Join(cp.bins, "kube-scheduler"),
		"--config="+path, "--secure-port=0", "--v=2")
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (cp *controlPlane) stop(t *testing.T) {
	cp.apiserver.stop(t) // before etcd: stopping both at once can hang the apiserver
	cp.etcd.stop(t)
}
