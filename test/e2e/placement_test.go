package e2e

// Data-local placement on real nodes: a SparkApplication-shaped workload on
// the two-node cluster of `hack/cluster.sh up --nodes 2`, scheduled by the
// real kube-scheduler configured with the Alcove extender
// (deploy/scheduler-config.yaml), after its input was written onto one node.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

const (
	sparkPVC   = "spark-data"
	sparkParts = 10 // input files, one per executor
	partMiB    = 4
	executors  = 10
)

// placement is the state the placement checks share.
type placement struct {
	c              *cluster
	dataNode, away string // the node holding the input, the other one
	pv             string
}

// TestPlacement: the input of an application is written from a pod pinned
// to one node (so its blocks are cached there only); then
//   - soft scoring puts >= 9 of 10 executors on that node;
//   - alcove.io/placement: required, and the extender's --hard, put all 10 there;
//   - pods without Alcove data get no opinion and spread as the scheduler's
//     own plugins place them;
//   - an executor pinned to the other node reads the input from the data
//     node's worker (remote read, every byte checked).
func TestPlacement(t *testing.T) {
	c := newCluster(t)
	require(t, len(c.nodes) >= 2, fmt.Sprintf("placement needs 2 nodes, the cluster has %d (hack/cluster.sh up --nodes 2)", len(c.nodes)))
	p := &placement{c: c, dataNode: c.nodes[1], away: c.nodes[0]}
	inst := c.installed()
	c.check("input-written-on-one-node", inst, p.load)
	loaded := []string{"input-written-on-one-node"}
	c.check("executors-next-to-data-soft", loaded, p.soft)
	c.check("executors-on-data-node-required", loaded, func(ctx context.Context) error {
		return p.run(ctx, "required", map[string]string{"alcove.io/placement": "required"}, executors)
	})
	c.check("pods-without-data-spread", inst, p.spread)
	c.check("executors-on-data-node-hard", loaded, func(ctx context.Context) error {
		if err := p.setHard(ctx); err != nil {
			return err
		}
		return p.run(ctx, "hard", nil, executors)
	})
	c.check("remote-read-from-other-node", loaded, p.remoteRead)
	c.check("helm-uninstall-leaves-no-mounts", inst, func(ctx context.Context) error { return c.uninstall(ctx, p.pv) })
}

// load: a pod pinned to the data node writes the input (10 files of 4 MiB
// and their MD5SUMS) through the PVC; every block is then cached on that
// node only, and the extender ranks that node first for a pod of the PVC.
func (p *placement) load(ctx context.Context) error {
	c := p.c
	pvc := replaceOnce(pvcYAML, "name: data", "name: "+sparkPVC)
	script := fmt.Sprintf(`mkdir -p /data/input
: > /tmp/MD5SUMS
for i in 0 1 2 3 4 5 6 7 8 9; do
  dd if=/dev/urandom of=/data/input/part-$i bs=1048576 count=%d 2>/dev/null
  echo "$(md5sum /data/input/part-$i | cut -d' ' -f1) part-$i" >> /tmp/MD5SUMS
done
cp /tmp/MD5SUMS /data/input/MD5SUMS
echo "loader on $ALCOVE_NODE: wrote 10 parts of %d MiB"`, partMiB, partMiB)
	loader := replaceOnce(pod("loader", "busybox", script, false), "claimName: data", "claimName: "+sparkPVC)
	loader = replaceOnce(loader, "  restartPolicy: Never\n", "  restartPolicy: Never\n  nodeSelector: {kubernetes.io/hostname: "+p.dataNode+"}\n")
	if err := c.apply(ctx, pvc+"---\n"+loader); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "loader", true, 3*time.Minute); err != nil {
		return err
	}
	out, _ := c.logs(ctx, testNS, "loader")
	fmt.Print(indent(out))
	pvc2, err := c.cs.CoreV1().PersistentVolumeClaims(testNS).Get(ctx, sparkPVC, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p.pv = pvc2.Spec.VolumeName
	// Where the blocks are, as the master says.
	for i := range sparkParts {
		path := fmt.Sprintf("/volumes/%s/input/part-%d", p.pv, i)
		nodes, err := p.blockNodes(ctx, path)
		if err != nil {
			return err
		}
		if len(nodes) != 1 || !nodes[p.dataNode] {
			return fmt.Errorf("%s is cached on %v, want %s only", path, nodes, p.dataNode)
		}
	}
	// The extender's index has caught up: it ranks the data node first.
	err = poll(ctx, 500*time.Millisecond, "the extender to rank "+p.dataNode+" first", func() (bool, error) {
		scores, err := p.prioritize(ctx)
		return err == nil && scores[p.dataNode] == extenderv1.MaxExtenderPriority && scores[p.away] == 0, err
	})
	if err != nil {
		return err
	}
	fmt.Printf("      %d parts (%d MiB) cached on %s only; the extender scores %s 10, %s 0\n",
		sparkParts, sparkParts*partMiB, p.dataNode, p.dataNode, p.away)
	return nil
}

// blockNodes is the set of nodes caching blocks of path (alcove fs stat).
func (p *placement) blockNodes(ctx context.Context, path string) (map[string]bool, error) {
	out, err := p.c.kubectl(ctx, "exec", "-n", releaseNS, release+"-master-0", "--", "alcove", "fs", "stat", "-o", "json", path)
	if err != nil {
		return nil, err
	}
	var st struct {
		Blocks []struct {
			Locations []struct {
				Node string `json:"node"`
			} `json:"locations"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("alcove fs stat %s: %w: %s", path, err, out)
	}
	nodes := map[string]bool{}
	for _, b := range st.Blocks {
		for _, l := range b.Locations {
			nodes[l.Node] = true
		}
	}
	return nodes, nil
}

// extenderURL is the extender's Service, as kube-scheduler reaches it
// (through kube-proxy: the test runs in node 1's network namespace).
func (p *placement) extenderURL(ctx context.Context) (string, error) {
	svc, err := p.c.cs.CoreV1().Services(releaseNS).Get(ctx, release+"-extender", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port), nil
}

// probePod is a pod of the PVC, as the scheduler would send it.
func (p *placement) probePod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: testNS, UID: types.UID("alcove-e2e-probe"), Annotations: annotations},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: sparkPVC},
		}}}},
	}
}

// extenderCall POSTs ExtenderArgs for the probe pod to the extender's verb.
func (p *placement) extenderCall(ctx context.Context, verb string, annotations map[string]string, out any) error {
	url, err := p.extenderURL(ctx)
	if err != nil {
		return err
	}
	names := append([]string(nil), p.c.nodes...)
	body, _ := json.Marshal(extenderv1.ExtenderArgs{Pod: p.probePod(annotations), NodeNames: &names})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/"+verb, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", verb, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

func (p *placement) prioritize(ctx context.Context) (map[string]int64, error) {
	var list extenderv1.HostPriorityList
	if err := p.extenderCall(ctx, "prioritize", nil, &list); err != nil {
		return nil, err
	}
	scores := map[string]int64{}
	for _, h := range list {
		scores[h.Host] = h.Score
	}
	return scores, nil
}

// soft: >= 9 of 10 executors on the data node, and the extender scored
// them (the scheduler did consult it: its own plugins spread pods evenly, see
// pods-without-data-spread).
func (p *placement) soft(ctx context.Context) error {
	before, _ := p.extenderRequests(ctx, "scored") // absent until the first scored request
	if err := p.run(ctx, "soft", nil, 9); err != nil {
		return err
	}
	after, err := p.extenderRequests(ctx, "scored")
	if err != nil {
		return err
	}
	fmt.Printf("      the extender scored %.0f pods meanwhile\n", after-before)
	if after-before < executors {
		return fmt.Errorf("the extender scored %.0f pods, want >= %d (the executors)", after-before, executors)
	}
	return nil
}

// extenderRequests is the extender's count of /prioritize requests with
// an outcome (scored, no_data, ...).
func (p *placement) extenderRequests(ctx context.Context, outcome string) (float64, error) {
	return p.c.podMetric(ctx, "extender", "", 8099, `alcove_extender_requests_total\{outcome="`+outcome+`",route="prioritize"\}`)
}

// run is one application: a driver Job and executor pods owned by the
// driver pod (as the Spark operator makes them), each reading one part and
// writing its MD5 to /data/output/<app>; the driver checks every part.
// At least want executors must land on the data node.
func (p *placement) run(ctx context.Context, app string, annotations map[string]string, want int) error {
	c := p.c
	driverScript := fmt.Sprintf(`ls /data/input
for i in 0 1 2 3 4 5 6 7 8 9; do
  t=0
  while [ ! -s /data/output/%[1]s/part-$i.md5 ]; do t=$((t+1)); [ $t -lt 600 ] || exit 1; sleep 0.5; done
  [ "$(cat /data/output/%[1]s/part-$i.md5)" = "$(grep " part-$i\$" /data/input/MD5SUMS | cut -d' ' -f1)" ] || { echo "part-$i: wrong MD5"; exit 1; }
done
echo "DRIVER-OK: 10 parts checked on $ALCOVE_NODE"`, app)
	job := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %[1]s-driver}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {spark-role: driver, spark-app-name: %[1]s}
      annotations: %[2]s
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: spark-kubernetes-driver
        image: localhost/busybox:e2e
        imagePullPolicy: Never
        command: ["sh", "-c", %[3]q]
        env: [{name: ALCOVE_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        resources: {requests: {cpu: 50m, memory: 32Mi}}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: %[4]s}}]
`, app, jsonMap(annotations), "set -e\n"+driverScript, sparkPVC)
	if err := c.apply(ctx, job); err != nil {
		return err
	}
	var driver *corev1.Pod
	err := poll(ctx, 500*time.Millisecond, "the driver pod of "+app, func() (bool, error) {
		l, err := c.cs.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: "spark-role=driver,spark-app-name=" + app})
		if err != nil || len(l.Items) != 1 || l.Items[0].Status.Phase != corev1.PodRunning {
			return false, err
		}
		driver = &l.Items[0]
		return true, nil
	})
	if err != nil {
		return err
	}
	for i := range executors {
		if _, err := c.cs.CoreV1().Pods(testNS).Create(ctx, p.executor(app, i, driver, annotations, ""), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	on := map[string]int{}
	err = poll(ctx, time.Second, "the executors of "+app+" to finish", func() (bool, error) {
		l, err := c.cs.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: "spark-role=executor,spark-app-name=" + app})
		if err != nil {
			return false, err
		}
		done := 0
		on = map[string]int{}
		for _, e := range l.Items {
			on[e.Spec.NodeName]++
			switch e.Status.Phase {
			case corev1.PodSucceeded:
				done++
			case corev1.PodFailed:
				logs, _ := c.logs(ctx, testNS, e.Name)
				return true, fmt.Errorf("executor %s failed: %s", e.Name, logs)
			}
		}
		return done == executors, nil
	})
	if err != nil {
		return fmt.Errorf("%w (executors per node so far: %v)%s", err, on, c.unfinished(context.WithoutCancel(ctx), "spark-role=executor,spark-app-name="+app))
	}
	if err := c.waitJob(ctx, app+"-driver"); err != nil {
		return err
	}
	logs, _ := c.kubectl(ctx, "logs", "-n", testNS, "job/"+app+"-driver")
	fmt.Printf("      %s: %d executors on %s, %d on %s; driver: %s\n", app, on[p.dataNode], p.dataNode, on[p.away], p.away, strings.TrimSpace(grep(logs, "DRIVER-OK")))
	if on[p.dataNode] < want {
		return fmt.Errorf("%d of %d executors on %s (the data node), want >= %d: %v", on[p.dataNode], executors, p.dataNode, want, on)
	}
	// Free the nodes for the next application.
	if _, err := c.kubectl(ctx, "delete", "-n", testNS, "job/"+app+"-driver", "--wait=true", "--timeout=120s"); err != nil {
		return err
	}
	_, err = c.kubectl(ctx, "delete", "-n", testNS, "pods", "-l", "spark-app-name="+app, "--wait=true", "--timeout=120s")
	return err
}

// executor is executor i of app, owned by the driver pod. node pins it.
func (p *placement) executor(app string, i int, driver *corev1.Pod, annotations map[string]string, node string) *corev1.Pod {
	script := fmt.Sprintf(`f=/data/input/part-%[1]d
got=$(md5sum $f | cut -d' ' -f1)
mkdir -p /data/output/%[2]s
echo $got > /data/output/%[2]s/part-%[1]d.md5
echo "executor %[1]d on $ALCOVE_NODE: part-%[1]d md5 $got"`, i, app)
	yes := true
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-exec-%d", app, i), Namespace: testNS, Annotations: annotations,
			Labels:          map[string]string{"spark-role": "executor", "spark-app-name": app, "spark-exec-id": fmt.Sprint(i)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: driver.Name, UID: driver.UID, Controller: &yes}},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace, NodeName: node,
			Containers: []corev1.Container{{
				Name: "spark-kubernetes-executor", Image: "localhost/busybox:e2e", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "set -e\n" + script},
				Env: []corev1.EnvVar{{Name: "ALCOVE_NODE", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: sparkPVC},
			}}},
		},
	}
}

// waitJob waits until a Job succeeded.
func (c *cluster) waitJob(ctx context.Context, name string) error {
	return poll(ctx, time.Second, "Job "+name+" to complete", func() (bool, error) {
		j, err := c.cs.BatchV1().Jobs(testNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if j.Status.Failed > 0 {
			logs, _ := c.kubectl(ctx, "logs", "-n", testNS, "job/"+name)
			return true, fmt.Errorf("job %s failed: %s", name, logs)
		}
		return j.Status.Succeeded > 0, nil
	})
}

func jsonMap(m map[string]string) string {
	b, _ := json.Marshal(m)
	if m == nil {
		return "{}"
	}
	return string(b)
}

// spread: pods without Alcove data (no PVC of the driver) get no opinion from
// the extender ("no_data", never "scored"), so the scheduler's own plugins
// spread them over both nodes.
func (p *placement) spread(ctx context.Context) error {
	c := p.c
	noData0, _ := p.extenderRequests(ctx, "no_data") // absent until the first such request
	scored0, _ := p.extenderRequests(ctx, "scored")
	grace := int64(0)
	for i := range executors {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("plain-%d", i), Namespace: testNS, Labels: map[string]string{"run": "plain"}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{
					Name: "c", Image: "localhost/pause:e2e", ImagePullPolicy: corev1.PullNever,
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
				}},
			},
		}
		if _, err := c.cs.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	on := map[string]int{}
	err := poll(ctx, 500*time.Millisecond, "plain pods scheduled", func() (bool, error) {
		l, err := c.cs.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: "run=plain"})
		if err != nil {
			return false, err
		}
		on = map[string]int{}
		n := 0
		for _, e := range l.Items {
			if e.Spec.NodeName != "" {
				on[e.Spec.NodeName]++
				n++
			}
		}
		return n == executors, nil
	})
	if err != nil {
		return err
	}
	noData, err := p.extenderRequests(ctx, "no_data")
	if err != nil {
		return err
	}
	scored, _ := p.extenderRequests(ctx, "scored")
	fmt.Printf("      %d pods without Alcove data: %v; extender /prioritize: %.0f no_data, %.0f scored meanwhile\n",
		executors, on, noData-noData0, scored-scored0)
	if _, err := c.kubectl(ctx, "delete", "-n", testNS, "pods", "-l", "run=plain", "--wait=true", "--timeout=60s"); err != nil {
		return err
	}
	if noData-noData0 < executors || scored != scored0 {
		return fmt.Errorf("the extender gave an opinion on pods without Alcove data (no_data +%.0f, scored +%.0f)", noData-noData0, scored-scored0)
	}
	for _, n := range c.nodes {
		if on[n] < 3 {
			return fmt.Errorf("pods without Alcove data did not spread: %v", on)
		}
	}
	return nil
}

// setHard restarts the extender with --hard (helm upgrade) and waits until
// the Service answers as the hard extender does: /filter drops the node
// without the data for a pod with no annotation.
func (p *placement) setHard(ctx context.Context) error {
	c := p.c
	values, err := c.valuesFile()
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, "", "helm", "upgrade", release, c.chart(), "-n", releaseNS, "-f", values,
		"--set", "extender.hard=true", "--wait", "--timeout", "180s"); err != nil {
		return err
	}
	// Both replicas answer through the Service while the old one stops:
	// several hard answers in a row.
	streak := 0
	return poll(ctx, 500*time.Millisecond, "the hard extender behind the Service", func() (bool, error) {
		var res extenderv1.ExtenderFilterResult
		if err := p.extenderCall(ctx, "filter", nil, &res); err != nil {
			streak = 0
			return false, err
		}
		if res.NodeNames != nil && len(*res.NodeNames) == 1 && (*res.NodeNames)[0] == p.dataNode {
			streak++
		} else {
			streak = 0
		}
		return streak >= 5, nil
	})
}

// remoteRead: an executor pinned to the other node (nodeName: no scheduler,
// no extender) reads every part; the bytes come from the data node's worker
// (its remote-read counter grows by at least the input's size) and match
// MD5SUMS.
func (p *placement) remoteRead(ctx context.Context) error {
	c := p.c
	const metric = "alcove_worker_bytes_read_remote_total"
	before, err := c.workerMetric(ctx, p.dataNode, metric)
	if err != nil {
		return err
	}
	ufsBefore, err := c.workerMetric(ctx, p.away, "alcove_worker_bytes_read_ufs_total")
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`cd /data/input
md5sum part-* > /tmp/got
while read sum name; do grep -qx "$sum  $name" /tmp/got || { echo "$name: MD5 differs"; exit 1; }; done < MD5SUMS
echo "REMOTE-OK: %d parts read on $ALCOVE_NODE, MD5s match"`, sparkParts)
	r := replaceOnce(pod("remote", "busybox", script, false), "claimName: data", "claimName: "+sparkPVC)
	r = replaceOnce(r, "  restartPolicy: Never\n", "  restartPolicy: Never\n  nodeName: "+p.away+"\n")
	if err := c.apply(ctx, r); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "remote", true, 3*time.Minute); err != nil {
		return err
	}
	out, _ := c.logs(ctx, testNS, "remote")
	if !strings.Contains(out, "REMOTE-OK") {
		return fmt.Errorf("remote reader output:\n%s", out)
	}
	after, err := c.workerMetric(ctx, p.dataNode, metric)
	if err != nil {
		return err
	}
	ufsAfter, err := c.workerMetric(ctx, p.away, "alcove_worker_bytes_read_ufs_total")
	if err != nil {
		return err
	}
	fmt.Print(indent(grep(out, "REMOTE-OK")))
	fmt.Printf("      worker on %s streamed %.0f bytes to remote clients; worker on %s read %.0f bytes from the UFS\n",
		p.dataNode, after-before, p.away, ufsAfter-ufsBefore)
	if after-before < sparkParts*partMiB<<20 {
		return fmt.Errorf("the read on %s did not come from %s's worker (+%.0f bytes remote, want >= %d)", p.away, p.dataNode, after-before, sparkParts*partMiB<<20)
	}
	return nil
}

// unfinished describes the pods matching selector that have not succeeded:
// phase, container states, recent events and the log's tail.
func (c *cluster) unfinished(ctx context.Context, selector string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := c.cs.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return "; listing pods: " + err.Error()
	}
	var b strings.Builder
	for _, p := range l.Items {
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		fmt.Fprintf(&b, "\n        %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil:
				fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Running != nil:
				fmt.Fprintf(&b, "; %s running since %s", cs.Name, cs.State.Running.StartedAt.Format(time.TimeOnly))
			case cs.State.Terminated != nil:
				fmt.Fprintf(&b, "; %s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			}
		}
		if ev, err := c.cs.CoreV1().Events(testNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
			for _, e := range ev.Items[max(0, len(ev.Items)-3):] {
				fmt.Fprintf(&b, "\n          event %s: %s", e.Reason, firstLine(e.Message))
			}
		}
		if logs, err := c.logs(ctx, testNS, p.Name); err == nil && logs != "" {
			fmt.Fprintf(&b, "\n          log: %s", firstLine(logs))
		}
	}
	return b.String()
}
