package extender

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/extender/locality"
	"github.com/alcove-io/alcove/extender/podpaths"
)

// Benchmark shape (issue 5, acceptance 3): 1,000 nodes, 1 M cached blocks
// of 64 MiB spread over 2,000 volumes (500 blocks each, each block on a
// random node), a pod with 2 PVCs.
const (
	benchNodes   = 1000
	benchBlocks  = 1_000_000
	benchVolumes = 2000
)

// benchSnapshot aggregates 1 M random block placements into the (node,
// volume) entries the master's index streams.
func benchSnapshot() (*apiv1.NodeCacheEvent, []string) {
	r := rand.New(rand.NewPCG(1, 2))
	nodes := make([]string, benchNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%04d", i)
	}
	agg := map[[2]int]int64{}
	for b := range benchBlocks {
		agg[[2]int{b % benchVolumes, r.IntN(benchNodes)}] += 64 << 20
	}
	ev := &apiv1.NodeCacheEvent{Snapshot: true, Prefixes: []string{"/"}, Epoch: "bench"}
	for k, v := range agg {
		ev.Entries = append(ev.Entries, &apiv1.NodeCacheEntry{Node: nodes[k[1]], Path: fmt.Sprintf("/volumes/pvc-%04d", k[0]), Bytes: v})
	}
	return ev, nodes
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func benchObjects() *fakeObjects {
	f := &fakeObjects{pvcs: map[string]*corev1.PersistentVolumeClaim{}, pvs: map[string]*corev1.PersistentVolume{}}
	for _, v := range []string{"pvc-0007", "pvc-1234"} {
		f.pvcs["ns/"+v] = &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{VolumeName: v}}
		f.pvs[v] = &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: v}, Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: meta.CSIDriver, VolumeHandle: v, VolumeAttributes: map[string]string{"path": "/volumes/" + v}}}}}
	}
	return f
}

// BenchmarkPrioritize measures /prioritize through the handler (JSON decode,
// resolve, lookup, score, encode) and reports p50/p99 latency and the
// locality index's heap.
func BenchmarkPrioritize(b *testing.B) {
	before := heapInUse()
	ev, nodes := benchSnapshot()
	x := locality.New()
	x.Apply(ev)
	entries := len(ev.Entries)
	ev = nil
	indexHeap := heapInUse() - before
	h := NewHandler(HandlerConfig{}, x, x, &podpaths.Resolver{Objects: benchObjects()}, klog.Background())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "spark-exec", Namespace: "ns", UID: ktypes.UID("u")}}
	for _, c := range []string{"pvc-0007", "pvc-1234"} {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	body, _ := json.Marshal(&extenderv1.ExtenderArgs{Pod: pod, NodeNames: &nodes})
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/prioritize", bytes.NewReader(body)))
		lat = append(lat, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("prioritize: %d %s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(p(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(indexHeap)/(1<<20), "index-MiB")
	b.Logf("/prioritize, pod with 2 PVCs, %d nodes, %d blocks → %d (node, volume) entries: p50 %v p99 %v over %d requests; index heap %.1f MiB; request body %d bytes",
		benchNodes, benchBlocks, entries, p(0.5), p(0.99), len(lat), float64(indexHeap)/(1<<20), len(body))
}
