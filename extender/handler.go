// Package extender is Alcove's kube-scheduler extender: an http.Handler
// that scores nodes (/prioritize) by the bytes of a pod's Alcove data cached
// on them and, for hard placement, filters nodes (/filter). It answers from
// an in-memory locality index the master streams to it, never calling the
// master per request; while that index is not synced it gives no opinion.
package extender

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	"github.com/alcove-io/alcove/extender/podpaths"
	"github.com/alcove-io/alcove/extender/score"
)

// Defaults.
const (
	DefaultMaxBodyBytes = 32 << 20
	DefaultMinFraction  = 0.5
	DefaultDampingPods  = 32
	DefaultHalfLife     = 60 * time.Second
)

// Locality answers cached bytes per node (locality.Index implements it).
type Locality interface {
	// Lookup adds the bytes of paths cached on each node into out; false
	// when the index is not synced with the master (no opinion).
	Lookup(paths, nodes []string, out []int64) bool
	Synced() bool
}

// PathResolver names the Alcove paths a pod reads (podpaths.Resolver).
type PathResolver interface {
	Paths(pod *corev1.Pod) ([]string, error)
}

// HandlerConfig tunes the handler.
type HandlerConfig struct {
	// Hard filters every pod with Alcove data (otherwise only pods
	// annotated alcove.io/placement: required).
	Hard bool
	// MinFraction: /filter keeps nodes holding at least this fraction of
	// the bytes the best node holds (default 0.5).
	MinFraction float64
	// DampingPods: a node's score is halved once this many data pods were
	// recently scored onto it (default 32; negative disables damping).
	DampingPods float64
	// HalfLife of the recent-pods count (default 60 s).
	HalfLife time.Duration
	// MaxBodyBytes bounds request bodies (default 32 MiB).
	MaxBodyBytes int64
	// Now is the clock (tests).
	Now func() time.Time
}

// Handler is the extender's http.Handler.
type Handler struct {
	cfg     HandlerConfig
	index   Locality
	paths   PathResolver
	recent  *recentPlacements
	metrics *metrics
	logger  klog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler builds a handler over index and resolver. stats feeds /metrics.
func NewHandler(cfg HandlerConfig, index Locality, stats indexStats, paths PathResolver, logger klog.Logger) *Handler {
	if cfg.MinFraction <= 0 {
		cfg.MinFraction = DefaultMinFraction
	}
	if cfg.DampingPods == 0 {
		cfg.DampingPods = DefaultDampingPods
	}
	if cfg.HalfLife <= 0 {
		cfg.HalfLife = DefaultHalfLife
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{
		cfg: cfg, index: index, paths: paths,
		recent:  newRecentPlacements(cfg.HalfLife, cfg.Now),
		metrics: newMetrics(stats),
		logger:  logger,
	}
}

// ServeHTTP routes exactly /prioritize, /filter, /healthz and /metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/prioritize":
		h.timed("prioritize", w, r, h.prioritize)
	case "/filter":
		h.timed("filter", w, r, h.filter)
	case "/healthz":
		// Healthy even without the master: the extender then answers
		// "no opinion", which is the designed degraded mode.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if h.index.Synced() {
			fmt.Fprintln(w, "ok")
		} else {
			fmt.Fprintln(w, "ok (locality index not synced: no opinion)")
		}
	case "/metrics":
		promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) timed(route string, w http.ResponseWriter, r *http.Request, fn func(http.ResponseWriter, *http.Request) string) {
	start := time.Now()
	outcome := fn(w, r)
	h.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	h.metrics.requests.WithLabelValues(route, outcome).Inc()
}

// readArgs decodes a POSTed ExtenderArgs within the body limit.
func (h *Handler) readArgs(w http.ResponseWriter, r *http.Request) (*extenderv1.ExtenderArgs, int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed: use POST", r.Method)
	}
	body := http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	var args extenderv1.ExtenderArgs
	if err := json.NewDecoder(body).Decode(&args); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("decode extender args: body larger than %d bytes", tooBig.Limit)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("decode extender args: %w", err)
	}
	if args.Pod == nil {
		return nil, http.StatusBadRequest, errors.New("decode extender args: no pod")
	}
	return &args, http.StatusOK, nil
}

// nodeNames returns the candidate node names (NodeNames when the scheduler
// is nodeCacheCapable, else the names of Nodes).
func nodeNames(args *extenderv1.ExtenderArgs) []string {
	if args.NodeNames != nil {
		return *args.NodeNames
	}
	if args.Nodes != nil {
		out := make([]string, len(args.Nodes.Items))
		for i := range args.Nodes.Items {
			out[i] = args.Nodes.Items[i].Name
		}
		return out
	}
	return nil
}

// cached resolves the pod's paths and looks up their bytes on nodes. ok is
// false when there is no opinion to give (no Alcove data, no index).
func (h *Handler) cached(pod *corev1.Pod, nodes []string) (bytes []int64, outcome string, ok bool) {
	logger := h.logger.WithValues("pod", klog.KObj(pod))
	paths, err := h.paths.Paths(pod)
	if err != nil {
		logger.V(2).Info("Some data paths of the pod did not resolve", "err", err)
	}
	if len(paths) == 0 {
		return nil, "no_data", false
	}
	bytes = make([]int64, len(nodes))
	if !h.index.Lookup(paths, nodes, bytes) {
		logger.V(2).Info("Locality index not synced with the master: no opinion", "paths", paths)
		return nil, "no_index", false
	}
	return bytes, "scored", true
}

func (h *Handler) prioritize(w http.ResponseWriter, r *http.Request) string {
	args, code, err := h.readArgs(w, r)
	if err != nil {
		h.logger.V(1).Info("Bad prioritize request", "err", err)
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return "bad_request"
	}
	nodes := nodeNames(args)
	list := make(extenderv1.HostPriorityList, len(nodes))
	for i, n := range nodes {
		list[i] = extenderv1.HostPriority{Host: n}
	}
	bytes, outcome, ok := h.cached(args.Pod, nodes)
	if ok {
		in := make([]score.Input, len(nodes))
		recent := make([]float64, len(nodes))
		h.recent.loads(nodes, recent)
		for i := range nodes {
			in[i] = score.Input{Cached: bytes[i], Recent: recent[i]}
		}
		scores := score.Scores(in, h.cfg.DampingPods)
		best := -1
		for i, s := range scores {
			list[i].Score = s
			if s > 0 && (best < 0 || s > scores[best]) {
				best = i
			}
		}
		if best >= 0 {
			h.recent.record(args.Pod.UID, nodes[best])
		}
		if h.logger.V(4).Enabled() {
			h.logger.V(4).Info("Prioritized", "pod", klog.KObj(args.Pod), "nodes", nodes, "cached", bytes, "recent", recent, "scores", scores)
		}
	}
	writeJSON(w, http.StatusOK, list)
	return outcome
}

func (h *Handler) filter(w http.ResponseWriter, r *http.Request) string {
	args, code, err := h.readArgs(w, r)
	if err != nil {
		h.logger.V(1).Info("Bad filter request", "err", err)
		// The scheduler reads Error; the status code says the same.
		writeJSON(w, code, &extenderv1.ExtenderFilterResult{Error: err.Error()})
		return "bad_request"
	}
	nodes := nodeNames(args)
	keep := make([]bool, len(nodes))
	for i := range keep {
		keep[i] = true
	}
	outcome := "not_required"
	failed := extenderv1.FailedNodesMap{}
	if h.cfg.Hard || podpaths.Required(args.Pod) {
		var bytes []int64
		var ok bool
		bytes, outcome, ok = h.cached(args.Pod, nodes)
		if ok {
			keep = score.Keep(bytes, h.cfg.MinFraction)
			var best int64
			for _, b := range bytes {
				best = max(best, b)
			}
			for i, n := range nodes {
				if !keep[i] {
					failed[n] = fmt.Sprintf("alcove: node caches %d bytes of the pod's data, below %.0f%% of the best node (%d bytes)", bytes[i], 100*h.cfg.MinFraction, best)
				}
			}
			outcome = "filtered"
		}
	}
	res := &extenderv1.ExtenderFilterResult{FailedNodes: failed}
	if args.NodeNames != nil || args.Nodes == nil {
		names := make([]string, 0, len(nodes))
		for i, n := range nodes {
			if keep[i] {
				names = append(names, n)
			}
		}
		res.NodeNames = &names
	} else {
		res.Nodes = &corev1.NodeList{}
		for i := range args.Nodes.Items {
			if keep[i] {
				res.Nodes.Items = append(res.Nodes.Items, args.Nodes.Items[i])
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
	return outcome
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
