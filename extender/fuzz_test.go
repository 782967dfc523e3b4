package extender

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	"github.com/alcove-io/alcove/extender/podpaths"
	"github.com/alcove-io/alcove/extender/score"
)

// FuzzHandler posts arbitrary bodies to /prioritize and /filter, as
// kube-scheduler (or anyone reaching port 8099) could. Properties: no
// panic; the answer is JSON with status 200, 400 or 413, never a server
// error; a bad request names its error; /prioritize scores exactly the
// candidate nodes, in order, within 0..MaxExtenderPriority; /filter keeps
// a subsequence of the candidates and gives a reason for every node it
// drops, and keeps every node when the pod asks for no hard placement.
func FuzzHandler(f *testing.F) {
	nodes := []string{"node-a", "node-b", "node-c", "node-unknown"}
	for _, p := range []*corev1.Pod{
		pod("1", nil, "data"),
		pod("2", nil, "data", "data2"),
		pod("3", map[string]string{podpaths.AnnotationPlacement: "required"}, "pending"),
		pod("8", map[string]string{podpaths.AnnotationDataPaths: " /volumes/pvc-data2/x , /data/train,relative"}),
	} {
		f.Add(args(p, nodes...), false, false)
		f.Add(args(p, nodes...), true, true)
		b, _ := json.Marshal(&extenderv1.ExtenderArgs{Pod: p, Nodes: &corev1.NodeList{Items: []corev1.Node{
			{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}}}})
		f.Add(b, true, false)
	}
	f.Add([]byte(`{"pod":null}`), false, false)
	f.Add([]byte(`{"pod":{},"nodenames":["a","a",""]}`), true, true)
	f.Add([]byte(`[`), true, false)
	x := syncedIndex()
	handlers := [2]*Handler{newTestHandler(x, HandlerConfig{}), newTestHandler(x, HandlerConfig{Hard: true})}
	f.Fuzz(func(t *testing.T, body []byte, filterRoute, hard bool) {
		h := handlers[0]
		if hard {
			h = handlers[1]
		}
		route := "/prioritize"
		if filterRoute {
			route = "/filter"
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, route, bytes.NewReader(body)))
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: content type %q", route, ct)
		}
		var in extenderv1.ExtenderArgs
		decoded := json.NewDecoder(bytes.NewReader(body)).Decode(&in) == nil && in.Pod != nil
		switch {
		case rec.Code == http.StatusOK && !decoded:
			t.Fatalf("%s: 200 for a body that does not decode: %q", route, body)
		case rec.Code == http.StatusBadRequest && decoded:
			t.Fatalf("%s: 400 for a body that decodes: %s", route, rec.Body)
		case rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest:
			t.Fatalf("%s: status %d: %s", route, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s: error answer without an error: %s (%v)", route, rec.Body, err)
			}
			return
		}
		cands := nodeNames(&in)
		if !filterRoute {
			var list extenderv1.HostPriorityList
			if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
				t.Fatalf("prioritize: %v: %s", err, rec.Body)
			}
			if len(list) != len(cands) {
				t.Fatalf("prioritize: %d scores for %d nodes", len(list), len(cands))
			}
			for i, hp := range list {
				if hp.Host != cands[i] || hp.Score < 0 || hp.Score > score.Max {
					t.Fatalf("prioritize: score %d is %+v for node %q", i, hp, cands[i])
				}
			}
			return
		}
		var res extenderv1.ExtenderFilterResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("filter: %v: %s", err, rec.Body)
		}
		if res.Error != "" {
			t.Fatalf("filter: error %q on a good request", res.Error)
		}
		var kept []string
		if in.NodeNames != nil || in.Nodes == nil {
			if res.NodeNames == nil {
				t.Fatalf("filter: no NodeNames answer to a NodeNames request")
			}
			kept = *res.NodeNames
		} else {
			if res.Nodes == nil {
				t.Fatalf("filter: no Nodes answer to a Nodes request")
			}
			for _, n := range res.Nodes.Items {
				kept = append(kept, n.Name)
			}
		}
		j := 0
		for _, c := range cands {
			if j < len(kept) && kept[j] == c {
				j++
				continue
			}
			if _, ok := res.FailedNodes[c]; !ok {
				t.Fatalf("filter: node %q dropped without a reason (kept %q of %q)", c, kept, cands)
			}
		}
		if j != len(kept) {
			t.Fatalf("filter: kept %q is not a subsequence of %q", kept, cands)
		}
		if !hard && !podpaths.Required(in.Pod) && len(kept) != len(cands) {
			t.Fatalf("filter: dropped nodes of a pod without hard placement")
		}
	})
}
