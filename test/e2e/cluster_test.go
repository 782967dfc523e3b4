package e2e

// The real-cluster end-to-end test: Alcove installed with its Helm chart on a
// one-node Kubernetes cluster with a real kubelet and containerd (hack/cluster.sh),
// exercised the way users use it (PVCs of the alluxio StorageClass, pods, a Job).
// Run it with `make e2e` (hack/e2e.sh), which brings the cluster up, runs this
// test binary inside the cluster's network namespace and tears everything down.
// Without ALCOVE_CLUSTER_DIR (plain `go test ./...`) it is skipped.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	releaseNS = "alcove" // the chart's namespace, as in README
	release   = "alcove"
	testNS    = "e2e"
)

// cluster is what hack/cluster.sh exports to the test (see `cluster.sh env`).
type cluster struct {
	t                *testing.T
	root             string // repository
	dir, cgroup      string
	nodes            []string // node i+1 of hack/cluster.sh: its directory is dir/n<i+1>
	kubeconfig, bins string
	cs               kubernetes.Interface
	results          []checkResult
	failedDeps       map[string]bool
	s3Root           bool       // MinIO is up: the chart's root UFS is a bucket (TestClusterEndToEnd)
	s3               *s3.Client // MinIO's, once up
}

type checkResult struct {
	name string
	err  error
	took time.Duration
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := os.Getenv("ALCOVE_CLUSTER_DIR")
	if dir == "" {
		t.Skip("no cluster: run `make e2e` (hack/e2e.sh sets ALCOVE_CLUSTER_DIR)")
	}
	root := os.Getenv("ALCOVE_REPO") // hack/cluster.sh run sets it (and runs in the repo root)
	if root == "" {
		root = repoRoot(t)
	}
	c := &cluster{
		t: t, root: root, dir: dir, cgroup: os.Getenv("ALCOVE_CLUSTER_CGROUP"),
		nodes: strings.Split(os.Getenv("ALCOVE_CLUSTER_NODES"), ","), kubeconfig: os.Getenv("KUBECONFIG"),
		failedDeps: map[string]bool{},
	}
	c.bins = filepath.Join(c.root, ".cache", "k8s", "bin")
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	c.cs = kubernetes.NewForConfigOrDie(rc)
	return c
}

// installed is the start of a cluster test that installs the chart first:
// it prints the summary of the checks at the end (with a dump of the cluster
// when the test failed) and runs helm-install, the check the others need.
func (c *cluster) installed() []string {
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.dump()
		}
		c.summary()
	})
	c.check("helm-install", nil, c.helmInstall)
	return []string{"helm-install"}
}

// require skips the test when a prerequisite is missing, and fails it
// instead under CI=true.
func require(t *testing.T, ok bool, missing string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(missing)
	}
	t.Skip(missing)
}

// check runs one named check (at most 5 minutes), prints PASS/FAIL with its
// duration and keeps going: later checks that need it are reported as failed
// without running.
func (c *cluster) check(name string, needs []string, fn func(ctx context.Context) error) {
	c.checkFor(name, 5*time.Minute, needs, fn)
}

// checkFor is check with a time limit of its own.
func (c *cluster) checkFor(name string, limit time.Duration, needs []string, fn func(ctx context.Context) error) {
	start := time.Now()
	var err error
	for _, n := range needs {
		if c.failedDeps[n] {
			err = fmt.Errorf("not run: needs %q, which failed", n)
		}
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		err = fn(ctx)
		cancel()
	}
	r := checkResult{name: name, err: err, took: time.Since(start).Round(100 * time.Millisecond)}
	c.results = append(c.results, r)
	if err != nil {
		c.failedDeps[name] = true
		fmt.Printf("FAIL  %-34s (%v): %v\n", name, r.took, err)
		c.t.Errorf("%s: %v", name, err)
		return
	}
	fmt.Printf("PASS  %-34s (%v)\n", name, r.took)
}

func (c *cluster) summary() {
	passed, failed := 0, 0
	fmt.Println("---- e2e summary ----")
	for _, r := range c.results {
		status := "PASS"
		if r.err != nil {
			status = "FAIL"
			failed++
		} else {
			passed++
		}
		fmt.Printf("  %s  %s\n", status, r.name)
	}
	fmt.Printf("e2e: %d passed, %d failed\n", passed, failed)
}

// run runs a command (kubectl, helm: their binaries from .cache/k8s/bin)
// with stdin, returning stdout; stderr is included in the error.
func (c *cluster) run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	bin := name
	if name == "kubectl" || name == "helm" {
		bin = filepath.Join(c.bins, name)
		args = append([]string{"--kubeconfig", c.kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = c.root
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(lastLines(errb.String()+out.String(), 15)))
	}
	return out.String(), nil
}

func (c *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, "", "kubectl", args...)
}

// apply creates the objects of a YAML document in the test namespace.
func (c *cluster) apply(ctx context.Context, yaml string) error {
	_, err := c.run(ctx, yaml, "kubectl", "apply", "-n", testNS, "-f", "-")
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls fn every interval until it returns true (with an error: the
// wait ends with it), or ctx ends; errors with false are retried.
func poll(ctx context.Context, interval time.Duration, what string, fn func() (bool, error)) error {
	var lastErr error
	for {
		ok, err := fn()
		if ok {
			return err
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("timed out waiting for %s: %v", what, lastErr)
			}
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(interval):
		}
	}
}

// waitPod waits until the pod is Running and ready, or has Succeeded when
// done is true; a pod that Failed ends the wait with its logs.
func (c *cluster) waitPod(ctx context.Context, ns, name string, done bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *corev1.Pod
	err := poll(ctx, 500*time.Millisecond, "pod "+ns+"/"+name, func() (bool, error) {
		p, err := c.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = p
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			return true, nil
		case corev1.PodFailed:
			return true, fmt.Errorf("pod failed")
		case corev1.PodRunning:
			if done {
				return false, nil
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if last != nil && (err != nil || last.Status.Phase == corev1.PodFailed) {
		logs, _ := c.kubectl(context.Background(), "logs", "-n", ns, name, "--all-containers", "--tail=30")
		if err == nil {
			err = fmt.Errorf("pod %s/%s failed", ns, name)
		}
		return fmt.Errorf("%v (phase %s, %s); logs:\n%s", err, last.Status.Phase, podWhy(last), logs)
	}
	return err
}

// podWhy summarizes why a pod is not running (waiting reasons, events-ish).
func podWhy(p *corev1.Pod) string {
	var parts []string
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			parts = append(parts, fmt.Sprintf("%s waiting: %s %s", cs.Name, w.Reason, w.Message))
		}
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("%s terminated: %s exit %d", cs.Name, t.Reason, t.ExitCode))
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", cond.Type, cond.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// logs returns a pod's log.
func (c *cluster) logs(ctx context.Context, ns, name string) (string, error) {
	b, err := c.cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(b), err
}

// deletePods deletes pods and waits until they are gone.
func (c *cluster) deletePods(ctx context.Context, ns string, names ...string) error {
	zero := int64(0)
	for _, n := range names {
		err := c.cs.CoreV1().Pods(ns).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	for _, n := range names {
		err := poll(ctx, 500*time.Millisecond, "deletion of pod "+n, func() (bool, error) {
			_, err := c.cs.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// dump prints what helps diagnose a failure: pods, events, Alcove logs.
func (c *cluster) dump() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods,pvc,pv", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"logs", "-n", releaseNS, "-l", "app.kubernetes.io/name=alcove", "--all-containers", "--prefix", "--tail=40"},
	} {
		out, err := c.kubectl(ctx, args...)
		fmt.Printf("---- kubectl %s ----\n%s%v\n", strings.Join(args, " "), lastLines(out, 60), errOrEmpty(err))
	}
	for _, n := range c.nodes {
		logs, _ := filepath.Glob(filepath.Join(c.nodeDir(n), "alcove", "csi", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			fmt.Printf("---- FUSE daemon log %s on %s ----\n%s\n", filepath.Base(l), n, lastLines(string(b), 30))
		}
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// valuesFile writes the chart values of the test cluster: local images, the
// UFS in a host directory every node sees (as an NFS export would be), FUSE
// daemons under the cluster's cgroup, small resources for 2 cores. Host
// paths on the nodes (kubelet's root, the CSI state, the domain socket) are
// the chart's defaults: every node has its own /var/lib/kubelet and
// /var/lib/alcove.
func (c *cluster) valuesFile() (string, error) {
	s3 := ""
	if c.s3Root {
		s3 = s3Values()
	}
	v := fmt.Sprintf(`image: {repository: localhost/alcove, tag: e2e, pullPolicy: Never}
ufs:
  volume:
    hostPath: {path: %[1]s/ufs, type: DirectoryOrCreate}
%[3]s
master:
  journal: {type: hostPath}   # /var/lib/alcove/journal of the master's node
  resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 1Gi}}
worker:
  mem: {size: 256Mi, medium: Memory}
  tiers:
    - {alias: SSD, path: /var/lib/alcove/ssd, size: 512Mi}
  resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 1Gi}}
csi:
  provisionerSecrets: true
  fuseCgroup: %[2]s/alcove-fuse
  controller:
    resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
  node:
    resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 512Mi}}
  provisioner:
    image: {repository: localhost/csi-provisioner, tag: e2e, pullPolicy: Never}
    resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
extender:
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
jobMaster:
  state: {type: emptyDir}
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
jobWorker:
  bandwidth: 16MB
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
`, c.dir, c.cgroup, s3)
	if os.Getenv("ALCOVE_E2E_NO_FUSE_CGROUP") == "1" {
		// Negative control: FUSE daemons stay in the node plugin's pod, so
		// csi-node-restart-keeps-reads must fail.
		v = strings.Replace(v, "fuseCgroup: "+c.cgroup+"/alcove-fuse", `fuseCgroup: ""`, 1)
	}
	p := filepath.Join(c.dir, "values-e2e.yaml")
	return p, os.WriteFile(p, []byte(v), 0o644)
}
