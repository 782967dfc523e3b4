package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/job/dataload"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/extender/podpaths"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestDataLoadController runs the DataLoad controller against a real
// kube-apiserver (the CRD from the chart) and a real Alcove cluster with
// its job tier, in this process.
func TestDataLoadController(t *testing.T) {
	bins := k8sBins(t)
	cp := startControlPlane(t, bins)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rc, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(rc)
	installCRD(ctx, t, dyn)

	c := alcovetest.Start(t, "a", "b")
	for _, d := range []string{"data", "big"} {
		if err := os.MkdirAll(filepath.Join(c.UFS(), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		writeBytes(t, filepath.Join(c.UFS(), "data", fmt.Sprintf("f%d", i)), 1<<20)
		writeBytes(t, filepath.Join(c.UFS(), "big", fmt.Sprintf("f%d", i)), 8<<20)
	}
	j := c.StartJobs(alcovetest.JobOptions{BandwidthBytes: 4 << 20, Slots: 1})
	ctrl := dataload.New(dataload.Config{Dynamic: dyn, Kube: cp.cs, Jobs: j.Client, Poll: 100 * time.Millisecond,
		Claims: &podpaths.Resolver{Objects: podpaths.StartListers(ctx, cp.cs, time.Minute)}})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(cctx, 2) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	res := dyn.Resource(dataload.GVR).Namespace("default")

	// A DataLoad of a path reaches Complete with 100 % and events.
	create(ctx, t, res, "warm", map[string]any{"path": "/data"})
	dl := waitPhase(ctx, t, res, "warm", dataload.PhaseComplete)
	if dl.Status.Progress != 100 || dl.Status.BytesLoaded != 6<<20 || !condition(dl, dataload.ConditionComplete) {
		t.Fatalf("status: %+v", dl.Status)
	}
	if pct := cachedPercent(ctx, t, c, "/data"); pct != 100 {
		t.Fatalf("/data %d%% cached after Complete", pct)
	}
	waitEvent(ctx, t, cp, "warm", "Complete")

	// A PVC bound to an Alcove volume resolves to its path; a node
	// selector of Kubernetes labels picks the nodes.
	if _, err := c.Client("a").Free(ctx, "/data", true, false); err != nil {
		t.Fatal(err)
	}
	waitCached(ctx, t, c, "/data", 0)
	mustCreate(t, func() error {
		_, err := cp.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"disk": "ssd"}}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := cp.cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pv-data"},
			Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: meta.CSIDriver, VolumeHandle: "/data"}}},
		}, metav1.CreateOptions{})
		return err
	})
	sc := ""
	mustCreate(t, func() error {
		_, err := cp.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-data", StorageClassName: &sc,
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}, metav1.CreateOptions{})
		return err
	})
	// A gated pod of the workload waits for the load.
	mustCreate(t, func() error {
		_, err := cp.cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "train", Labels: map[string]string{"app": "train"}},
			Spec: corev1.PodSpec{SchedulingGates: []corev1.PodSchedulingGate{{Name: dataload.SchedulingGate}},
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		return err
	})
	create(ctx, t, res, "by-claim", map[string]any{"pvc": "data", "nodeSelector": map[string]any{"disk": "ssd"},
		"runBefore": map[string]any{"matchLabels": map[string]any{"app": "train"}}})
	dl = waitPhase(ctx, t, res, "by-claim", dataload.PhaseComplete)
	if dl.Status.Path != "/data" || dl.Status.Progress != 100 {
		t.Fatalf("status: %+v", dl.Status)
	}
	per := cachedPerNode(ctx, t, c, "/data")
	if per["a"] != 0 || per["b"] != 6<<20 {
		t.Fatalf("nodeSelector disk=ssd (node b): cached %v", per)
	}
	if err := poll(ctx, 100*time.Millisecond, "pod ungated", func() (bool, error) {
		p, err := cp.cs.CoreV1().Pods("default").Get(ctx, "train", metav1.GetOptions{})
		return err == nil && len(p.Spec.SchedulingGates) == 0, err
	}); err != nil {
		t.Fatal(err)
	}

	// Bad input: a path that does not exist fails with a reason.
	create(ctx, t, res, "missing", map[string]any{"path": "/nope"})
	dl = waitPhase(ctx, t, res, "missing", dataload.PhaseFailed)
	if !condition(dl, dataload.ConditionFailed) || !strings.Contains(dl.Status.Message, "does not exist") {
		t.Fatalf("status: %+v", dl.Status)
	}

	// Deleting a running DataLoad cancels its job.
	create(ctx, t, res, "slow", map[string]any{"path": "/big"})
	dl = waitPhase(ctx, t, res, "slow", dataload.PhaseRunning)
	if err := res.Delete(ctx, "slow", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 100*time.Millisecond, "DataLoad deleted", func() (bool, error) {
		_, err := res.Get(ctx, "slow", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	info, err := j.Client.Get(ctx, dl.Status.JobID)
	if err != nil || info.GetState() != apiv1.JobState_JOB_CANCELED {
		t.Fatalf("job of the deleted DataLoad: %v %v", info, err)
	}
}

func writeBytes(t *testing.T, p string, n int) {
	t.Helper()
	if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, fn func() error) {
	t.Helper()
	if err := fn(); err != nil {
		t.Fatal(err)
	}
}

// installCRD creates the chart's DataLoad CRD and waits until it serves.
func installCRD(ctx context.Context, t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "helm", "alcove", "crds", "dataloads.alcove.io.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	if err := poll(ctx, 100*time.Millisecond, "CRD served", func() (bool, error) {
		_, err := dyn.Resource(dataload.GVR).Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func create(ctx context.Context, t *testing.T, res dynamic.ResourceInterface, name string, spec map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": dataload.Group + "/" + dataload.Version, "kind": dataload.Kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create DataLoad %s: %v", name, err)
	}
}

func waitPhase(ctx context.Context, t *testing.T, res dynamic.ResourceInterface, name, phase string) *dataload.DataLoad {
	t.Helper()
	var dl dataload.DataLoad
	if err := poll(ctx, 100*time.Millisecond, "DataLoad "+name+" "+phase, func() (bool, error) {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		dl = dataload.DataLoad{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dl); err != nil {
			return false, err
		}
		return dl.Status.Phase == phase, nil
	}); err != nil {
		t.Fatalf("%v: last status %+v", err, dl.Status)
	}
	return &dl
}

func condition(dl *dataload.DataLoad, typ string) bool {
	for _, c := range dl.Status.Conditions {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func waitEvent(ctx context.Context, t *testing.T, cp *controlPlane, name, reason string) {
	t.Helper()
	if err := poll(ctx, 100*time.Millisecond, "event "+reason, func() (bool, error) {
		evs, err := cp.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func cachedPerNode(ctx context.Context, t *testing.T, c *alcovetest.Cluster, p string) map[string]int64 {
	t.Helper()
	infos, err := c.Client("a").ListStatus(ctx, p, true, false)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int64{}
	for _, f := range infos {
		for _, b := range f.GetFileBlockInfos() {
			for _, l := range b.GetBlockInfo().GetLocations() {
				per[l.GetNode()] += b.GetBlockInfo().GetLength()
			}
		}
	}
	return per
}

func cachedPercent(ctx context.Context, t *testing.T, c *alcovetest.Cluster, p string) int64 {
	t.Helper()
	var n int64
	for _, b := range cachedPerNode(ctx, t, c, p) {
		n += b
	}
	return n * 100 / (6 << 20)
}

func waitCached(ctx context.Context, t *testing.T, c *alcovetest.Cluster, p string, want int64) {
	t.Helper()
	if err := poll(ctx, 50*time.Millisecond, "cached bytes", func() (bool, error) {
		var n int64
		for _, b := range cachedPerNode(ctx, t, c, p) {
			n += b
		}
		return n == want, nil
	}); err != nil {
		t.Fatal(err)
	}
}
