package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const bigMiB = 48 // size of the file the restart check reads slowly

// TestClusterEndToEnd installs the chart and runs every check of issue 6
// (and the disruption checks of issue 12) in order, printing a PASS/FAIL
// line per check and a summary.
func TestClusterEndToEnd(t *testing.T) {
	c := newCluster(t)
	defer func() {
		if t.Failed() {
			c.dump()
		}
		c.summary()
	}()
	var pvName string
	c.check("minio-up", nil, c.minioUp)
	c.check("helm-lint", nil, c.helmLint)
	c.check("manifests-accepted-by-apiserver", nil, c.manifestsDryRun)
	c.check("helm-install", []string{"minio-up"}, c.helmInstall)
	inst := []string{"helm-install"}
	c.check("root-ufs-on-s3-from-secret", inst, c.s3RootUFS)
	c.check("rbac-least-privilege", inst, c.rbac)
	c.check("tls-enforced", inst, c.tlsEnforced)
	c.check("tls-secrets-idempotent", inst, c.tlsSecretsIdempotent)
	c.check("pvc-binds-via-csi-provisioner", inst, func(ctx context.Context) (err error) {
		pvName, err = c.pvcBinds(ctx)
		return err
	})
	bound := []string{"pvc-binds-via-csi-provisioner"}
	c.check("pod-writes-and-reads", bound, c.podWritesAndReads)
	written := []string{"pod-writes-and-reads"}
	c.check("second-pod-sees-files", written, c.secondPodSees)
	c.check("domain-socket-volume-in-pod", written, func(ctx context.Context) error { return c.domainSocket(ctx, pvName) })
	c.check("tenant-isolation", inst, c.tenantIsolation)
	c.check("wordcount-job", bound, func(ctx context.Context) error { return c.wordCount(ctx, pvName) })
	c.check("s3-storageclass-wordcount", inst, c.s3StorageClassWordCount)
	c.check("extender-index-synced", inst, c.extenderSynced)
	c.check("dataload-completes-and-delete-cancels", inst, c.dataLoads)
	c.check("csi-node-restart-keeps-reads", written, c.csiNodeRestart)
	c.check("worker-rolling-restart-keeps-io", bound, func(ctx context.Context) error {
		return c.ioLoopAcross(ctx, "io-worker", pvName, c.workerRollingRestart)
	})
	c.check("leader-master-delete-keeps-io", bound, func(ctx context.Context) error {
		return c.ioLoopAcross(ctx, "io-master", pvName, c.deleteLeaderMaster)
	})
	c.check("helm-uninstall-leaves-no-mounts", inst, func(ctx context.Context) error { return c.uninstall(ctx, pvName) })
}

func (c *cluster) chart() string { return filepath.Join(c.root, "deploy", "helm", "alcove") }

// helmLint: the chart is lint-clean with its defaults and the test values.
func (c *cluster) helmLint(ctx context.Context) error {
	values, err := c.valuesFile()
	if err != nil {
		return err
	}
	for _, args := range [][]string{{"lint", "--strict", c.chart()}, {"lint", "--strict", c.chart(), "-f", values}} {
		out, err := c.run(ctx, "", "helm", args...)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "0 chart(s) failed") || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
			return fmt.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
		}
	}
	return nil
}

// manifestsDryRun: deploy/manifests (what kubectl users apply) and the chart
// rendered with the test values pass server-side apply on the real apiserver.
func (c *cluster) manifestsDryRun(ctx context.Context) error {
	dir := filepath.Join(c.root, "deploy", "manifests")
	if _, err := c.kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(dir, "namespace.yaml")); err != nil {
		return err
	}
	out, err := c.kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-R", "-f", dir)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "storageclass.storage.k8s.io/alluxio serverside-applied") {
		return fmt.Errorf("StorageClass alluxio not among the applied objects:\n%s", out)
	}
	// The plain example (PVC + pod) too; the SparkApplication and Workflow
	// examples need their operators' CRDs, which this cluster does not have.
	if _, err := c.kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-n", "default",
		"-f", filepath.Join(c.root, "deploy", "examples", "pvc-and-pod.yaml")); err != nil {
		return err
	}
	values, err := c.valuesFile()
	if err != nil {
		return err
	}
	rendered, err := c.run(ctx, "", "helm", "template", release, c.chart(), "-n", releaseNS, "-f", values)
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, rendered, "kubectl", "apply", "--server-side", "--dry-run=server", "-f", "-"); err != nil {
		return fmt.Errorf("chart rendered with the test values: %w", err)
	}
	fmt.Printf("      %d objects in deploy/manifests accepted (dry-run=server)\n", strings.Count(out, "serverside-applied"))
	return nil
}

func (c *cluster) helmInstall(ctx context.Context) error {
	values, err := c.valuesFile()
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, "", "helm", "install", release, c.chart(), "-n", releaseNS, "--create-namespace",
		"-f", values, "--wait", "--timeout", "180s"); err != nil {
		return err
	}
	pods, err := c.kubectl(ctx, "get", "pods", "-n", releaseNS, "-o", "wide")
	fmt.Print(indent(pods))
	if err != nil {
		return err
	}
	_, err = c.kubectl(ctx, "create", "namespace", testNS)
	return err
}

const pvcYAML = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: alluxio
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
`

// pod is a busybox (or alcove) pod running script once, with the PVC at
// /data and optionally the domain-socket inline volume.
func pod(name, image, script string, socket bool, env ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/%s:e2e
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    env: [{name: ALCOVE_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}%s]
    volumeMounts:
    - {name: data, mountPath: /data}
`, name, image, "set -e\n"+script, strings.Join(env, ""))
	if socket {
		b.WriteString("    - {name: socket, mountPath: /var/lib/alcove/worker}\n")
	}
	b.WriteString("  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: data}\n")
	if socket {
		b.WriteString("  - name: socket\n    csi: {driver: csi.alcove.io, volumeAttributes: {type: domain-socket}}\n")
	}
	return b.String()
}

// pvcBinds: a PVC of the alluxio StorageClass binds, through the real
// csi-provisioner, once its first consumer (the writer) is scheduled.
func (c *cluster) pvcBinds(ctx context.Context) (string, error) {
	script := `test -S /var/lib/alcove/worker/domain.sock && echo "socket: present"
mkdir -p /data/docs
for i in 1 2 3 4 5; do echo "file $i from the writer pod" > /data/docs/f$i.txt; done
dd if=/dev/urandom of=/tmp/big bs=1048576 count=` + strconv.Itoa(bigMiB) + ` 2>/dev/null
want=$(md5sum /tmp/big | cut -d' ' -f1)
cp /tmp/big /data/big
echo $want > /data/big.md5
got=$(md5sum /data/big | cut -d' ' -f1)
echo "big: wrote $want read back $got"
[ "$want" = "$got" ]
cat /data/docs/f3.txt
ls -l /data /data/docs
echo WRITER-OK`
	if err := c.apply(ctx, pvcYAML+"---\n"+pod("writer", "busybox", script, true)); err != nil {
		return "", err
	}
	var pv string
	err := poll(ctx, 500*time.Millisecond, "PVC data Bound", func() (bool, error) {
		pvc, err := c.cs.CoreV1().PersistentVolumeClaims(testNS).Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pv = pvc.Spec.VolumeName
		return pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		return "", err
	}
	v, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	by := v.Annotations["pv.kubernetes.io/provisioned-by"]
	if v.Spec.CSI == nil || v.Spec.CSI.Driver != "csi.alcove.io" || by != "csi.alcove.io" {
		return "", fmt.Errorf("PV %s not provisioned by csi.alcove.io (annotation %q)", pv, by)
	}
	fmt.Printf("      PVC data bound to %s (csi.alcove.io, path %s)\n", pv, v.Spec.CSI.VolumeAttributes["path"])
	return pv, nil
}

// podWritesAndReads: the writer pod wrote files and a 48 MiB file through the
// FUSE volume and read them back.
func (c *cluster) podWritesAndReads(ctx context.Context) error {
	if err := c.waitPod(ctx, testNS, "writer", true, 3*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, "writer")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "file 3 from the writer pod") || !strings.Contains(out, "WRITER-OK") {
		return fmt.Errorf("writer output:\n%s", out)
	}
	fmt.Print(indent(grep(out, "big:")))
	return nil
}

// secondPodSees: another pod on the node mounts the same PVC and sees it all.
func (c *cluster) secondPodSees(ctx context.Context) error {
	script := `for i in 1 2 3 4 5; do grep -qx "file $i from the writer pod" /data/docs/f$i.txt; done
[ "$(md5sum /data/big | cut -d' ' -f1)" = "$(cat /data/big.md5)" ]
echo "reader: 5 files and big ($(cat /data/big.md5)) as written"
echo "from the reader pod" > /data/docs/reply.txt
echo READER-OK`
	if err := c.apply(ctx, pod("reader", "busybox", script, false)); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "reader", true, 2*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, "reader")
	if err != nil || !strings.Contains(out, "READER-OK") {
		return fmt.Errorf("reader output (%v):\n%s", err, out)
	}
	fmt.Print(indent(grep(out, "reader:")))
	return nil
}

// domainSocket: the inline domain-socket volume puts the worker's socket in
// the pod, and an Alcove client there reads over it (short-circuit): the
// worker on the pod's node counts the file's size in domain-socket bytes.
func (c *cluster) domainSocket(ctx context.Context, pv string) error {
	const metric = "alcove_worker_bytes_read_domain_socket_total"
	before := map[string]float64{}
	for _, n := range c.nodes {
		v, err := c.workerMetric(ctx, n, metric)
		if err != nil {
			return err
		}
		before[n] = v
	}
	master := fmt.Sprintf(`, {name: ALCOVE_MASTER, value: "%s-master-0.%s-master.%s.svc.cluster.local:19998"}`, release, release, releaseNS)
	script := fmt.Sprintf(`ls -l /var/lib/alcove/worker
test -S /var/lib/alcove/worker/domain.sock
got=$(alcove fs cat /volumes/%s/big | md5sum | cut -d' ' -f1)
echo "short-circuit read: $got"
[ "$got" = "$(cat /data/big.md5)" ]
echo SOCKET-OK`, pv)
	// The CLI in the pod is an operator's: the release's admin certificate.
	if err := c.copyAdminTLS(ctx); err != nil {
		return err
	}
	if err := c.apply(ctx, adminTLSPod(pod("socket", "alcove", script, true, master+adminTLSEnv))); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "socket", true, 2*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, "socket")
	if err != nil || !strings.Contains(out, "SOCKET-OK") {
		return fmt.Errorf("socket pod output (%v):\n%s", err, out)
	}
	node, err := c.podNode(ctx, testNS, "socket")
	if err != nil {
		return err
	}
	after, err := c.workerMetric(ctx, node, metric)
	if err != nil {
		return err
	}
	fmt.Print(indent(grep(out, "domain.sock") + fmt.Sprintf("worker on %s: bytes over the domain socket %.0f -> %.0f\n", node, before[node], after)))
	if after-before[node] < bigMiB<<20 {
		return fmt.Errorf("the pod's read did not go over the domain socket (worker counter on %s +%.0f bytes)", node, after-before[node])
	}
	return nil
}

// podNode is the node a pod was scheduled to.
func (c *cluster) podNode(ctx context.Context, ns, name string) (string, error) {
	p, err := c.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s/%s is not scheduled", ns, name)
	}
	return p.Spec.NodeName, nil
}

// extenderSynced: the scheduler extender Deployment follows the master's
// per-node cache stream (its index is synced and has entries for the data
// the previous checks cached). kube-scheduler is not pointed at it here: with
// one node it skips scoring (test/e2e's extender test covers placement).
func (c *cluster) extenderSynced(ctx context.Context) error {
	var synced, entries float64
	err := poll(ctx, time.Second, "extender index synced with entries", func() (bool, error) {
		var err error
		if synced, err = c.podMetric(ctx, "extender", "", 8099, "alcove_extender_index_synced"); err != nil {
			return false, err
		}
		if entries, err = c.podMetric(ctx, "extender", "", 8099, "alcove_extender_index_entries"); err != nil {
			return false, err
		}
		return synced == 1 && entries > 0, nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("      extender index synced, %.0f (node, path) entries\n", entries)
	return nil
}

// workerMetric reads a counter from /metrics of the worker on node (pod IP,
// web port).
func (c *cluster) workerMetric(ctx context.Context, node, name string) (float64, error) {
	return c.podMetric(ctx, "worker", node, 30000, name)
}

// releasePod is the release's pod of a component on node ("": its only pod).
func (c *cluster) releasePod(ctx context.Context, component, node string) (*corev1.Pod, error) {
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + component}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	pods, err := c.cs.CoreV1().Pods(releaseNS).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		return nil, fmt.Errorf("%d %s pods on node %q, want 1", len(live), component, node)
	}
	return &live[0], nil
}

// podMetric reads a sample from /metrics of the release's pod of a
// component on node, at its pod IP (the test runs in the cluster's network).
func (c *cluster) podMetric(ctx context.Context, component, node string, port int, name string) (float64, error) {
	pod, err := c.releasePod(ctx, component, node)
	if err != nil {
		return 0, err
	}
	return metricAt(ctx, pod.Status.PodIP, port, name)
}

// metricAt reads a sample from /metrics at ip:port.
func metricAt(ctx context.Context, ip string, port int, name string) (float64, error) {
	url := fmt.Sprintf("http://%s:%d/metrics", ip, port)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("%s not in %s", name, url)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// wordCount: a file is loaded into Alcove with the CLI (alcove fs
// copyFromLocal in the master pod), then a Job counts its words through the
// PVC with sh/awk; the counts must be exact.
func (c *cluster) wordCount(ctx context.Context, pv string) error {
	text, want := wordsText(6)
	dst := "/volumes/" + pv + "/input/words.txt"
	load := fmt.Sprintf("cat > /tmp/words.txt && alcove fs mkdir /volumes/%s/input && alcove fs copyFromLocal /tmp/words.txt %s && alcove fs stat %s", pv, dst, dst)
	out, err := c.run(ctx, text, "kubectl", "exec", "-i", "-n", releaseNS, release+"-master-0", "--", "sh", "-c", load)
	if err != nil {
		return fmt.Errorf("load words.txt into Alcove: %w", err)
	}
	fmt.Print(indent(lastLines(out, 6)))
	wantLines, err := c.wordCountJob(ctx, "wordcount", "data", "/data/input/words.txt", "/data/output/counts.txt", want)
	if err != nil {
		return err
	}
	// The result was written back through the volume: Alcove has it.
	res, err := c.kubectl(ctx, "exec", "-n", releaseNS, release+"-master-0", "--", "alcove", "fs", "cat", "/volumes/"+pv+"/output/counts.txt")
	if err != nil || strings.TrimSpace(res) != wantLines {
		return fmt.Errorf("counts.txt in Alcove (%v):\n%s", err, res)
	}
	fmt.Printf("      60000 words, %d distinct, counts exact: %s\n", len(want), strings.ReplaceAll(wantLines, "\n", ", "))
	return nil
}

// wordsText is 60,000 words of a small vocabulary (skewed counts), 10 a
// line, and the count of each.
func wordsText(seed int64) (string, map[string]int) {
	vocab := strings.Fields("alluxio alcove spark executor cache block worker master tier locality socket kubelet")
	want := map[string]int{}
	var text strings.Builder
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < 60000; i++ {
		w := vocab[rng.Intn(len(vocab))]
		if i%3 == 0 { // skew the counts
			w = vocab[rng.Intn(3)]
		}
		want[w]++
		text.WriteString(w)
		if i%10 == 9 {
			text.WriteString("\n")
		} else {
			text.WriteString(" ")
		}
	}
	return text.String(), want
}

// wordCountJob runs a busybox Job that counts the words of in on claim
// (writing them to out when out is set), and checks the counts against
// want; it returns the expected lines.
func (c *cluster) wordCountJob(ctx context.Context, name, claim, in, out string, want map[string]int) (string, error) {
	count := fmt.Sprintf("tr -s ' ' '\\n' < %s | awk 'NF {n[$1]++} END {for (w in n) print w, n[w]}' | sort", in)
	if out != "" {
		count = fmt.Sprintf("mkdir -p %s; %s > %s; cat %s", filepath.Dir(out), count, out, out)
	}
	job := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: wc
        image: localhost/busybox:e2e
        imagePullPolicy: Never
        command: ["sh", "-c", %q]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: %s}}]
`, name, "set -e; "+count, claim)
	if err := c.apply(ctx, job); err != nil {
		return "", err
	}
	err := poll(ctx, time.Second, "Job "+name+" to complete", func() (bool, error) {
		j, err := c.cs.BatchV1().Jobs(testNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if j.Status.Failed > 0 {
			return true, fmt.Errorf("job failed")
		}
		return j.Status.Succeeded > 0, nil
	})
	logs, lerr := c.kubectl(ctx, "logs", "-n", testNS, "job/"+name)
	if err != nil {
		return "", fmt.Errorf("%v; logs (%v):\n%s", err, lerr, logs)
	}
	var wantLines []string
	for w, n := range want {
		wantLines = append(wantLines, fmt.Sprintf("%s %d", w, n))
	}
	sort.Strings(wantLines)
	if got := strings.TrimSpace(logs); got != strings.Join(wantLines, "\n") {
		return "", fmt.Errorf("word counts differ:\ngot:\n%s\nwant:\n%s", got, strings.Join(wantLines, "\n"))
	}
	return strings.Join(wantLines, "\n"), nil
}

// csiNodeRestart: a pod reads a 48 MiB file slowly (one open fd, 1 MiB every
// 0.3 s) and re-reads it whole every second, while the CSI node plugin's pod
// is deleted and recreated by its DaemonSet. Every read must succeed with the
// right bytes: the FUSE daemons outlive the plugin's pod and the new plugin
// adopts them.
func (c *cluster) csiNodeRestart(ctx context.Context) error {
	script := fmt.Sprintf(`want=$(cat /data/big.md5)
size=%d
exec 3< /data/big
: > /tmp/got
echo "reading slowly"
( i=0; while [ $i -lt 40 ]; do [ "$(md5sum /data/big | cut -d' ' -f1)" = "$want" ] || { echo "REREAD-MISMATCH $i"; exit 1; }; i=$((i+1)); sleep 1; done; echo "rereads: 40 whole-file reads ok" ) &
rr=$!
n=0; i=0
while [ $n -lt $size ] && [ $i -lt 400 ]; do
  dd bs=1048576 count=1 <&3 >> /tmp/got 2>/dev/null
  n=$(stat -c %%s /tmp/got); i=$((i+1)); sleep 0.3
done
got=$(md5sum /tmp/got | cut -d' ' -f1)
echo "slow read: $n bytes in $i reads, md5 $got"
[ "$got" = "$want" ]
wait $rr
echo RESTART-OK`, bigMiB<<20)
	if err := c.apply(ctx, pod("slowreader", "busybox", script, false)); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "slowreader", false, 2*time.Minute); err != nil {
		return err
	}
	node, err := c.podNode(ctx, testNS, "slowreader")
	if err != nil {
		return err
	}
	daemons := c.fuseDaemons(node)
	for _, pid := range daemons {
		if err := daemonConfined(pid); err != nil {
			return err
		}
	}
	fmt.Printf("      FUSE daemons %v: the CA alone and a volume token, no private key\n", daemons)
	old, err := c.releasePod(ctx, "csi-node", node)
	if err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // mid-read
	start := time.Now()
	if err := c.deletePods(ctx, releaseNS, old.Name); err != nil {
		return err
	}
	var fresh *corev1.Pod
	err = poll(ctx, 500*time.Millisecond, "a new CSI node pod on "+node, func() (bool, error) {
		fresh, err = c.releasePod(ctx, "csi-node", node)
		return err == nil, err
	})
	if err == nil {
		err = c.waitPod(ctx, releaseNS, fresh.Name, false, time.Minute)
	}
	if err != nil {
		return err
	}
	fmt.Printf("      CSI node pod %s on %s deleted, %s ready after %v; FUSE daemons there before %v, after %v\n",
		old.Name, node, fresh.Name, time.Since(start).Round(100*time.Millisecond), daemons, c.fuseDaemons(node))
	if err := c.waitPod(ctx, testNS, "slowreader", true, 3*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, "slowreader")
	if err != nil || !strings.Contains(out, "RESTART-OK") {
		return fmt.Errorf("slowreader output (%v):\n%s", err, out)
	}
	fmt.Print(indent(grep(out, "read")))
	return nil
}

// uninstall: with the workloads and the PVC gone, `helm uninstall` leaves no
// FUSE mount, no CSI mount and no FUSE daemon on the node.
func (c *cluster) uninstall(ctx context.Context, pv string) error {
	if _, err := c.kubectl(ctx, "delete", "namespace", testNS, "--wait=true", "--timeout=120s"); err != nil {
		return err
	}
	// The storage suite deletes its namespaces without waiting for them; a
	// pod still terminating there needs the CSI node plugin to unpublish its
	// volume, so the release must outlive every namespace being deleted.
	err := poll(ctx, time.Second, "namespaces being deleted to go", func() (bool, error) {
		l, err := c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var terminating []string
		for _, ns := range l.Items {
			if ns.Status.Phase == corev1.NamespaceTerminating {
				terminating = append(terminating, ns.Name)
			}
		}
		if len(terminating) > 0 {
			return false, fmt.Errorf("still terminating: %s", strings.Join(terminating, ", "))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if pv != "" {
		err := poll(ctx, 500*time.Millisecond, "PV "+pv+" deleted by the provisioner", func() (bool, error) {
			_, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return err
		}
	}
	if _, err := c.run(ctx, "", "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "120s"); err != nil {
		return err
	}
	err = poll(ctx, time.Second, "release pods gone", func() (bool, error) {
		l, err := c.cs.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
	if err != nil {
		return err
	}
	// The masters' hostPath journals outlive the release, as a PV would;
	// the next test installs a new namespace (this one may have its root
	// on a MinIO that is gone by then).
	for _, n := range c.nodes {
		if err := os.RemoveAll(filepath.Join(c.nodeDir(n), "alcove", "journal")); err != nil {
			return fmt.Errorf("remove the journals on %s: %w", n, err)
		}
	}
	var left []string
	_ = poll(ctx, time.Second, "mounts and daemons gone", func() (bool, error) {
		left = c.leftovers()
		return len(left) == 0, nil
	})
	if len(left) > 0 {
		return fmt.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
	fmt.Printf("      no fuse.alcove or CSI mounts and no FUSE daemons left on %d node(s)\n", len(c.nodes))
	return nil
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "      " + strings.ReplaceAll(s, "\n", "\n      ") + "\n"
}
