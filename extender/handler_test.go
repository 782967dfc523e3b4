package extender

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/extender/locality"
	"github.com/alcove-io/alcove/extender/podpaths"
	"github.com/alcove-io/alcove/extender/score"
)

// fakeObjects is an in-memory podpaths.Objects.
type fakeObjects struct {
	pvcs map[string]*corev1.PersistentVolumeClaim // namespace/name
	pvs  map[string]*corev1.PersistentVolume
	scs  map[string]*storagev1.StorageClass
}

func notFound(what, name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: what}, name)
}

func (f *fakeObjects) PVC(ns, name string) (*corev1.PersistentVolumeClaim, error) {
	if p, ok := f.pvcs[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, notFound("persistentvolumeclaims", name)
}

func (f *fakeObjects) PV(name string) (*corev1.PersistentVolume, error) {
	if p, ok := f.pvs[name]; ok {
		return p, nil
	}
	return nil, notFound("persistentvolumes", name)
}

func (f *fakeObjects) StorageClass(name string) (*storagev1.StorageClass, error) {
	if s, ok := f.scs[name]; ok {
		return s, nil
	}
	return nil, notFound("storageclasses", name)
}

func strp(s string) *string { return &s }

func testObjects() *fakeObjects {
	csiPV := func(name, handle, path string) *corev1.PersistentVolume {
		attrs := map[string]string{}
		if path != "" {
			attrs["path"] = path
		}
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: meta.CSIDriver, VolumeHandle: handle, VolumeAttributes: attrs}},
		}}
	}
	return &fakeObjects{
		pvcs: map[string]*corev1.PersistentVolumeClaim{
			"ns/data":    {Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-data"}},
			"ns/data2":   {Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-data2"}},
			"ns/nfs":     {Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-nfs"}},
			"ns/pending": {Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: strp("alluxio-bound")}},
			"ns/fresh":   {Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: strp("alluxio")}},
		},
		pvs: map[string]*corev1.PersistentVolume{
			"pv-data":  csiPV("pv-data", "pv-data", "/volumes/pvc-data"),
			"pv-data2": csiPV("pv-data2", "pvc-data2", ""),
			"pv-nfs":   {ObjectMeta: metav1.ObjectMeta{Name: "pv-nfs"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "x", Path: "/"}}}},
		},
		scs: map[string]*storagev1.StorageClass{
			"alluxio-bound": {Provisioner: meta.CSIDriver, Parameters: map[string]string{"path": "/data/train"}},
			"alluxio":       {Provisioner: meta.CSIDriver},
		},
	}
}

func syncedIndex() *locality.Index {
	x := locality.New()
	x.Apply(&apiv1.NodeCacheEvent{Snapshot: true, Prefixes: []string{"/", "/data/train"}, Entries: []*apiv1.NodeCacheEntry{
		{Node: "node-a", Path: "/volumes/pvc-data", Bytes: 20},
		{Node: "node-b", Path: "/volumes/pvc-data", Bytes: 70},
		{Node: "node-c", Path: "/volumes/pvc-data2", Bytes: 100},
		{Node: "node-a", Path: "/data/train", Bytes: 50},
		{Node: "node-a", Path: "/", Bytes: 1000},
	}})
	return x
}

func newTestHandler(x *locality.Index, cfg HandlerConfig) *Handler {
	if cfg.DampingPods == 0 {
		cfg.DampingPods = -1
	}
	return NewHandler(cfg, x, x, &podpaths.Resolver{Objects: testObjects()}, klog.Background())
}

func pod(uid string, ann map[string]string, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + uid, Namespace: "ns", UID: ktypes.UID("uid-" + uid), Annotations: ann}}
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

func post(t *testing.T, h http.Handler, route string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, route, bytes.NewReader(body)))
	return rec
}

func args(p *corev1.Pod, nodes ...string) []byte {
	b, _ := json.Marshal(&extenderv1.ExtenderArgs{Pod: p, NodeNames: &nodes})
	return b
}

func prioritize(t *testing.T, h http.Handler, p *corev1.Pod, nodes ...string) map[string]int64 {
	t.Helper()
	rec := post(t, h, "/prioritize", args(p, nodes...))
	if rec.Code != http.StatusOK {
		t.Fatalf("prioritize: %d %s", rec.Code, rec.Body)
	}
	var list extenderv1.HostPriorityList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(nodes) {
		t.Fatalf("got %d priorities for %d nodes", len(list), len(nodes))
	}
	out := map[string]int64{}
	for i, hp := range list {
		if hp.Host != nodes[i] {
			t.Fatalf("priority %d for %s, want node order %v", i, hp.Host, nodes)
		}
		out[hp.Host] = hp.Score
	}
	return out
}

func filter(t *testing.T, h http.Handler, p *corev1.Pod, nodes ...string) *extenderv1.ExtenderFilterResult {
	t.Helper()
	rec := post(t, h, "/filter", args(p, nodes...))
	var res extenderv1.ExtenderFilterResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatalf("filter: %d %s: %v", rec.Code, rec.Body, err)
	}
	return &res
}

func eq(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMaxMatchesScheduler(t *testing.T) {
	if score.Max != extenderv1.MaxExtenderPriority {
		t.Fatalf("score.Max %d != MaxExtenderPriority %d", score.Max, extenderv1.MaxExtenderPriority)
	}
}

func TestPrioritize(t *testing.T) {
	h := newTestHandler(syncedIndex(), HandlerConfig{})
	nodes := []string{"node-a", "node-b", "node-c", "node-unknown"}
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]int64
	}{
		{"bound PVC", pod("1", nil, "data"), map[string]int64{"node-a": 3, "node-b": 10, "node-c": 0, "node-unknown": 0}},
		{"two PVCs add up", pod("2", nil, "data", "data2"), map[string]int64{"node-a": 2, "node-b": 7, "node-c": 10, "node-unknown": 0}},
		{"pending PVC through StorageClass path", pod("3", nil, "pending"), map[string]int64{"node-a": 10, "node-b": 0, "node-c": 0, "node-unknown": 0}},
		{"fresh dynamic PVC has no data", pod("4", nil, "fresh"), map[string]int64{"node-a": 0, "node-b": 0, "node-c": 0, "node-unknown": 0}},
		{"non-Alcove PV", pod("5", nil, "nfs"), map[string]int64{"node-a": 0, "node-b": 0, "node-c": 0, "node-unknown": 0}},
		{"missing PVC", pod("6", nil, "absent"), map[string]int64{"node-a": 0, "node-b": 0, "node-c": 0, "node-unknown": 0}},
		{"pod without volumes", pod("7", nil), map[string]int64{"node-a": 0, "node-b": 0, "node-c": 0, "node-unknown": 0}},
		{"annotation paths", pod("8", map[string]string{podpaths.AnnotationDataPaths: " /volumes/pvc-data2/x , /data/train"}), map[string]int64{"node-a": 5, "node-b": 0, "node-c": 10, "node-unknown": 0}},
		{"bad annotation entry ignored", pod("9", map[string]string{podpaths.AnnotationDataPaths: "relative,/volumes/pvc-data"}), map[string]int64{"node-a": 3, "node-b": 10, "node-c": 0, "node-unknown": 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := prioritize(t, h, tt.pod, nodes...); !eq(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrioritizeNodesOnlyUnknown(t *testing.T) {
	h := newTestHandler(syncedIndex(), HandlerConfig{})
	if got := prioritize(t, h, pod("1", nil, "data"), "x", "y"); !eq(got, map[string]int64{"x": 0, "y": 0}) {
		t.Fatalf("unknown nodes scored %v", got)
	}
	if got := prioritize(t, h, pod("1", nil, "data")); len(got) != 0 {
		t.Fatalf("no nodes scored %v", got)
	}
}

func TestPrioritizeFullNodeObjects(t *testing.T) {
	h := newTestHandler(syncedIndex(), HandlerConfig{})
	nl := &corev1.NodeList{Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}}}
	b, _ := json.Marshal(&extenderv1.ExtenderArgs{Pod: pod("1", nil, "data"), Nodes: nl})
	rec := post(t, h, "/prioritize", b)
	if !strings.Contains(rec.Body.String(), `"Host":"node-b","Score":10`) {
		t.Fatalf("full Node objects: %s", rec.Body)
	}
	rec = post(t, newTestHandler(syncedIndex(), HandlerConfig{Hard: true}), "/filter", b)
	var res extenderv1.ExtenderFilterResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.Nodes == nil || len(res.Nodes.Items) != 1 || res.Nodes.Items[0].Name != "node-b" {
		t.Fatalf("filter with Node objects: %s", rec.Body)
	}
}

func TestMalformedAndOversizeRequests(t *testing.T) {
	h := newTestHandler(syncedIndex(), HandlerConfig{MaxBodyBytes: 1024})
	for _, route := range []string{"/prioritize", "/filter"} {
		rec := post(t, h, route, []byte(`{"Pod": {`))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s malformed: %d %s", route, rec.Code, rec.Body)
		}
		rec = post(t, h, route, []byte(`{"NodeNames": ["a"]}`))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "no pod") {
			t.Errorf("%s without pod: %d %s", route, rec.Code, rec.Body)
		}
		big := args(pod("1", map[string]string{"x": strings.Repeat("y", 4096)}, "data"), "node-a")
		rec = post(t, h, route, big)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s oversize: %d %s", route, rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, route, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d", route, rec.Code)
		}
	}
	// /filter errors travel in the Error field.
	res := filter(t, h, nil)
	if res.Error == "" {
		t.Errorf("filter error not in Error field: %+v", res)
	}
	for _, p := range []string{"/prioritize/", "/Prioritize", "/", "/filterx"} {
		rec := post(t, h, p, args(pod("1", nil, "data"), "node-a"))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}

func TestFilter(t *testing.T) {
	nodes := []string{"node-a", "node-b", "node-c"}
	soft := newTestHandler(syncedIndex(), HandlerConfig{})
	hard := newTestHandler(syncedIndex(), HandlerConfig{Hard: true, MinFraction: 0.5})
	names := func(r *extenderv1.ExtenderFilterResult) string {
		if r.NodeNames == nil {
			return "<nil>"
		}
		return strings.Join(*r.NodeNames, ",")
	}
	if r := filter(t, soft, pod("1", nil, "data"), nodes...); names(r) != "node-a,node-b,node-c" || len(r.FailedNodes) != 0 {
		t.Fatalf("soft filter: %+v", r)
	}
	r := filter(t, hard, pod("1", nil, "data"), nodes...)
	if names(r) != "node-b" || len(r.FailedNodes) != 2 || !strings.Contains(r.FailedNodes["node-a"], "20 bytes") || r.Error != "" {
		t.Fatalf("hard filter: %+v", r)
	}
	if r := filter(t, soft, pod("2", map[string]string{podpaths.AnnotationPlacement: "required"}, "data"), nodes...); names(r) != "node-b" {
		t.Fatalf("annotated filter: %+v", r)
	}
	if r := filter(t, hard, pod("3", nil), nodes...); names(r) != "node-a,node-b,node-c" {
		t.Fatalf("hard filter of a pod without data: %+v", r)
	}
	// Data nowhere cached: keep every node.
	if r := filter(t, hard, pod("4", map[string]string{podpaths.AnnotationDataPaths: "/volumes/empty"}), nodes...); names(r) != "node-a,node-b,node-c" {
		t.Fatalf("hard filter with nothing cached: %+v", r)
	}
}

// While the index is not synced (master down) the handler answers "no
// opinion": zero scores, no filtering, and /healthz stays up.
func TestMasterDownNoOpinion(t *testing.T) {
	x := locality.New()
	h := newTestHandler(x, HandlerConfig{Hard: true})
	nodes := []string{"node-a", "node-b"}
	if got := prioritize(t, h, pod("1", nil, "data"), nodes...); !eq(got, map[string]int64{"node-a": 0, "node-b": 0}) {
		t.Fatalf("unsynced scores %v", got)
	}
	if r := filter(t, h, pod("1", nil, "data"), nodes...); r.NodeNames == nil || len(*r.NodeNames) != 2 {
		t.Fatalf("unsynced filter %+v", r)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "not synced") {
		t.Fatalf("healthz %d %s", rec.Code, rec.Body)
	}
	// Synced, then the stream breaks again.
	x.Apply(&apiv1.NodeCacheEvent{Snapshot: true, Entries: []*apiv1.NodeCacheEntry{{Node: "node-b", Path: "/volumes/pvc-data", Bytes: 1}}})
	if got := prioritize(t, h, pod("2", nil, "data"), nodes...); got["node-b"] != 10 {
		t.Fatalf("synced scores %v", got)
	}
	x.SetUnsynced()
	if got := prioritize(t, h, pod("3", nil, "data"), nodes...); got["node-b"] != 0 {
		t.Fatalf("scores after stream loss %v", got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `alcove_extender_requests_total{outcome="no_index",route="prioritize"} 2`) {
		t.Fatalf("metrics:\n%s", rec.Body)
	}
}

// A burst of pods on the same data is damped on the best node; a pod
// scored twice (a retry) counts once.
func TestDamping(t *testing.T) {
	now := time.Unix(1000, 0)
	h := newTestHandler(syncedIndex(), HandlerConfig{DampingPods: 4, HalfLife: time.Minute, Now: func() time.Time { return now }})
	nodes := []string{"node-a", "node-b"}
	var got []int64
	for i := range 8 {
		s := prioritize(t, h, pod(string(rune('a'+i)), nil, "data"), nodes...)
		got = append(got, s["node-b"])
	}
	want := []int64{10, 8, 7, 6, 5, 4, 4, 4} // 10/(1+n/4) after n earlier pods
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("node-b scores over a burst %v, want %v", got, want)
		}
	}
	prioritize(t, h, pod("a", nil, "data"), nodes...)
	load := make([]float64, 2)
	h.recent.loads(nodes, load) // the retry may move the pod (node-a ties now), never add one
	if load[0]+load[1] != 8 {
		t.Fatalf("recent pods after a retry = %v, want 8 in all", load)
	}
	now = now.Add(10 * time.Minute) // decayed
	if s := prioritize(t, h, pod("z", nil, "data"), nodes...)["node-b"]; s != 10 {
		t.Fatalf("after decay node-b scores %d, want 10", s)
	}
}
