package extender

import (
	"math"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// recentPlacements counts, per node, the data pods recently scored onto it
// (the node the extender ranked first), decaying exponentially with a
// half-life. It feeds the score's damping term so that a burst of pods
// does not pile onto one node: kube-scheduler does not tell extenders where
// it bound a pod, so the extender's own best guess is what it remembers. A
// pod scored again (a retry) moves its count instead of adding one.
type recentPlacements struct {
	mu       sync.Mutex
	halfLife time.Duration
	now      func() time.Time
	nodes    map[string]decayed
	pods     map[types.UID]placement
}

type decayed struct {
	v  float64
	at time.Time
}

type placement struct {
	node string
	at   time.Time
}

func newRecentPlacements(halfLife time.Duration, now func() time.Time) *recentPlacements {
	return &recentPlacements{halfLife: halfLife, now: now, nodes: map[string]decayed{}, pods: map[types.UID]placement{}}
}

func (r *recentPlacements) decay(v float64, from, to time.Time) float64 {
	if r.halfLife <= 0 {
		return 0
	}
	dt := to.Sub(from)
	if dt <= 0 {
		return v
	}
	return v * math.Exp2(-float64(dt)/float64(r.halfLife))
}

func (r *recentPlacements) addLocked(node string, delta float64, now time.Time) {
	d := r.nodes[node]
	v := r.decay(d.v, d.at, now) + delta
	if v < 1e-3 {
		delete(r.nodes, node)
		return
	}
	r.nodes[node] = decayed{v: v, at: now}
}

// record notes that pod was scored onto node.
func (r *recentPlacements) record(pod types.UID, node string) {
	if r.halfLife <= 0 || pod == "" || node == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if old, ok := r.pods[pod]; ok {
		if old.node == node {
			return
		}
		r.addLocked(old.node, -r.decay(1, old.at, now), now)
	}
	r.pods[pod] = placement{node: node, at: now}
	r.addLocked(node, 1, now)
	if len(r.pods) > 4096 {
		for uid, p := range r.pods {
			if now.Sub(p.at) > 10*r.halfLife {
				delete(r.pods, uid)
			}
		}
	}
}

// loads writes each node's decayed recent pod count into out.
func (r *recentPlacements) loads(nodes []string, out []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.nodes) == 0 {
		return
	}
	now := r.now()
	for i, n := range nodes {
		if d, ok := r.nodes[n]; ok {
			out[i] = r.decay(d.v, d.at, now)
		}
	}
}
