// Package gctune gives a daemon's garbage collector a heap floor.
//
// The master keeps its namespace in bbolt (mmap, off the Go heap), so its
// live heap is a few MiB whatever the file count. With GOGC=100 the
// collector then runs after every few MiB of garbage, that is dozens of
// times a second under a metadata load, and takes a fifth of the CPU (a
// profile of `make bench-meta`). Go has no minimum heap setting: after
// each collection this raises the GC percent so the next goal is the
// floor while the live heap is below half of it, and leaves GOGC's own
// behaviour (goal = 2 × live) above that, so memory stays bounded by
// max(floor, 2 × live) and never thrashes against a hard limit.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// base is the GC percent the tuner never goes below (Go's default).
const base = 100

// Tuner adjusts the GC percent after every collection until Stop.
type Tuner struct {
	floor   uint64
	stopped atomic.Bool
	prev    int
	sample  []metrics.Sample
	mu      sync.Mutex // guards sample (finalizers run one at a time; Stop may race)
}

// Start tunes the collector to a heap goal of at least floor bytes. It
// does nothing (returns nil) when floor ≤ 0 or when the operator set GOGC
// or GOMEMLIMIT, whose choice wins. Stop restores the previous percent.
func Start(floor int64) *Tuner {
	if floor <= 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	t := &Tuner{floor: uint64(floor), prev: debug.SetGCPercent(base),
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	t.arm()
	return t
}

// sentinel is garbage whose finalizer marks the end of a GC cycle.
type sentinel struct{ _ [16]byte }

// arm leaves a sentinel for the next collection to find. Finalizers run on
// the runtime's finalizer goroutine, so the tuner owns no goroutine.
func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		t.arm()
	})
}

// tune sets the percent for the next goal: live × (1 + pct/100) = floor.
func (t *Tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	debug.SetGCPercent(Percent(t.floor, liveBytes(t.sample)))
}

// Percent is the GC percent that puts the next heap goal at floor for a
// live heap of live bytes, and never below Go's default.
func Percent(floor, live uint64) int {
	live = max(live, 1<<20) // a nearly empty heap: avoid absurd percents
	if floor <= 2*live {
		return base
	}
	return int(min((floor-live)*100/live, 1<<20))
}

func liveBytes(s []metrics.Sample) uint64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Stop ends the tuning and restores the GC percent of before Start. Safe
// on a nil Tuner and more than once.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped.Swap(true) {
		debug.SetGCPercent(t.prev)
	}
}
