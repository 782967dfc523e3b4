// Package e2e runs Alcove against a real Kubernetes control plane (etcd,
// kube-apiserver, kube-scheduler v1.33 built from the Go module proxy by
// hack/k8s-bins.sh) on 127.0.0.1. No kubelet: pods are scheduled and bound
// to Node objects but never run.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/extender"
	"github.com/alcove-io/alcove/extender/podpaths"
	"github.com/alcove-io/alcove/test/alcovetest"
)

var nodes = []string{"node-a", "node-b", "node-c"}

const schedulerConfig = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
leaderElection:
  leaderElect: false
extenders:
- urlPrefix: "http://%s"
  prioritizeVerb: prioritize
  filterVerb: filter
  weight: 5
  nodeCacheCapable: true
  ignorable: true
  httpTimeout: 5s
`

func TestExtenderPlacesPodsWithRealScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the real control plane test")
	}
	bins := k8sBins(t)
	start := time.Now()
	cp := startControlPlane(t, bins)
	t.Logf("etcd + kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := cp.cs
	createNodes(t, ctx, cs)

	// Alcove: a master and one worker per node; a volume whose data is
	// cached 70% on node-b, 20% on node-a (the last 10% only in the UFS).
	ac := alcovetest.Start(t, nodes...)
	const mb = 1 << 20
	for i := range 10 {
		p := fmt.Sprintf("/volumes/pvc-e2e/part-%d", i)
		switch {
		case i < 7:
			ac.Write("node-b", p, mb)
		case i < 9:
			ac.Write("node-a", p, mb)
		default:
			ac.WriteType("node-c", p, mb, apiv1.WriteType_THROUGH)
		}
	}
	ac.WaitCached("/volumes/pvc-e2e", "node-b", 7*mb)
	ac.WaitCached("/volumes/pvc-e2e", "node-a", 2*mb)
	createVolume(t, ctx, cs, "pvc-e2e", "/volumes/pvc-e2e")

	soft := startExtender(t, ctx, cp, ac, false)
	hard := startExtender(t, ctx, cp, ac, true)

	// Phase 1: soft scoring.
	sched := cp.startScheduler(t, "kube-scheduler-soft", fmt.Sprintf(schedulerConfig, cp.kubeconfig, soft.Addr()))
	got := runPods(t, ctx, cs, "soft", 20, "pvc-e2e")
	t.Logf("soft: 20 pods on the PVC landed %v", got)
	if got["node-b"] < 19 {
		t.Errorf("soft: %d of 20 pods on node-b, want >= 19 (%v)", got["node-b"], got)
	}
	checkScored(t, soft.Addr(), 20)
	plain := runPods(t, ctx, cs, "plain", 12, "")
	t.Logf("pods without Alcove volumes landed %v", plain)
	if len(plain) < 2 {
		t.Errorf("pods without Alcove data did not spread: %v", plain)
	}
	sched.stop(t)

	// Phase 2: hard placement (--hard): every pod on node-b.
	cp.startScheduler(t, "kube-scheduler-hard", fmt.Sprintf(schedulerConfig, cp.kubeconfig, hard.Addr()))
	got = runPods(t, ctx, cs, "hard", 20, "pvc-e2e")
	t.Logf("hard: 20 pods on the PVC landed %v", got)
	if got["node-b"] != 20 {
		t.Errorf("hard: %d of 20 pods on node-b, want 20 (%v)", got["node-b"], got)
	}
	checkScored(t, hard.Addr(), 0) // one feasible node: the scheduler skips scoring
	plain = runPods(t, ctx, cs, "plain-hard", 12, "")
	t.Logf("hard: pods without Alcove volumes landed %v", plain)
	if len(plain) < 2 {
		t.Errorf("hard: pods without Alcove data did not spread: %v", plain)
	}
	t.Logf("whole test after binaries: %v", time.Since(start).Round(time.Millisecond))
}

// checkScored fails unless the extender's metrics show at least n scored
// /prioritize calls and that /filter was called (the scheduler really used it).
func checkScored(t *testing.T, addr string, n int) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var scored, filterCalls float64
	for _, line := range strings.Split(string(body), "\n") {
		var v float64
		switch {
		case strings.HasPrefix(line, `alcove_extender_requests_total{outcome="scored",route="prioritize"}`):
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			scored += v
		case strings.HasPrefix(line, `alcove_extender_requests_total{`) && strings.Contains(line, `route="filter"`):
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			filterCalls += v
		}
	}
	t.Logf("extender %s: %v scored /prioritize calls, %v /filter calls", addr, scored, filterCalls)
	if scored < float64(n) || filterCalls == 0 {
		t.Errorf("extender %s was not used as expected: scored=%v (want >= %d) filter=%v", addr, scored, n, filterCalls)
	}
}

func createNodes(t *testing.T, ctx context.Context, cs kubernetes.Interface) {
	t.Helper()
	for _, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/hostname": n}}}
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Admission taints new nodes not-ready; these fake nodes are ready.
		created.Spec.Taints = nil
		if created, err = cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		capacity := corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods: resource.MustParse("110"),
		}
		created.Status = corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// createVolume makes a bound PV/PVC pair of the Alcove driver at path (no
// controller-manager runs, so the binding is written directly).
func createVolume(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, path string) {
	t.Helper()
	empty := ""
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: meta.CSIDriver, VolumeHandle: name, VolumeAttributes: map[string]string{podpaths.AttrPath: path},
			}},
			ClaimRef:         &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "default", Name: name},
			StorageClassName: empty,
		},
	}
	pv, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status.Phase = corev1.VolumeBound
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{
			"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
		}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:       name,
			StorageClassName: &empty,
		},
	}
	pvc, err = cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	pvc.Status.AccessModes = pvc.Spec.AccessModes
	pvc.Status.Capacity = pv.Spec.Capacity
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func startExtender(t *testing.T, ctx context.Context, cp *controlPlane, ac *alcovetest.Cluster, hard bool) *extender.Server {
	t.Helper()
	s, err := extender.New(extender.Config{
		Listen: "127.0.0.1:0", MasterAddresses: []string{ac.MasterAddr}, Kubeconfig: cp.kubeconfig,
		Handler: extender.HandlerConfig{Hard: hard},
	})
	if err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(klog.NewContext(ctx, klog.Background()))
	done := make(chan error, 1)
	go func() { done <- s.Run(ectx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("extender: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !s.Index.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("extender index did not sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// runPods creates n pods (with the claim, if any) and waits until all are
// bound; it returns how many landed on each node.
func runPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, prefix string, n int, claim string) map[string]int {
	t.Helper()
	no := false
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i), Namespace: "default", Labels: map[string]string{"run": prefix}},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: &no,
				Containers:                   []corev1.Container{{Name: "c", Image: "localhost/pause:never-pulled"}},
			},
		}
		if claim != "" {
			pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}}
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "run=" + prefix})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		bound := 0
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				out[p.Spec.NodeName]++
				bound++
			}
		}
		if bound == n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d of %d pods bound (%v)", prefix, bound, n, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
