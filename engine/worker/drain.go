package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

// DefaultDrainTimeout bounds a graceful shutdown: a bit under the chart's
// terminationGracePeriodSeconds (60), so the worker exits on its own before
// the kubelet kills it.
const DefaultDrainTimeout = 50 * time.Second

// gate counts work that must finish before the worker exits (writes,
// incoming replicas, persists) and refuses new work once draining.
type gate struct {
	mu       sync.Mutex
	n        int
	draining bool
	idle     chan struct{} // closed when n drops to 0 while draining
}

// enter admits one unit of work; false once draining.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// drain refuses new work and waits until the admitted work is done or ctx
// ends. It returns how much work was still running when it gave up.
func (g *gate) drain(ctx context.Context) int {
	g.mu.Lock()
	g.draining = true
	if g.n == 0 {
		g.mu.Unlock()
		return 0
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return 0
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.n
	}
}

// errDraining is what new writes get while the worker shuts down: clients
// take it as a cue to write through another worker.
func errDraining(what string) error {
	return fmt.Errorf("%s: %w: this worker is shutting down (draining); use another worker", what, meta.ErrUnavailable)
}

// Drain prepares a graceful exit (SIGTERM): new writes, replicas and
// persist commands are refused with Unavailable, and the writes and
// persists already running are waited for, until ctx ends. Reads go on
// being served. Close follows.
func (w *Worker) Drain(ctx context.Context) error {
	start := time.Now()
	w.log.Info("draining: refusing new writes, finishing in-flight writes and persists")
	left := w.work.drain(ctx)
	if w.persister != nil {
		left += w.persister.drain(ctx)
	}
	if left > 0 {
		return fmt.Errorf("drain worker: %d writes or persists still running after %v: %w", left, time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	w.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
