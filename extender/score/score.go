// Package score turns per-node cached bytes into scheduler extender
// priorities. It is pure: no clocks, no I/O, no shared state.
package score

import "math"

// Max is the best score a node can get; it equals
// k8s.io/kube-scheduler/extender/v1.MaxExtenderPriority (the extender
// package's tests check it).
const Max int64 = 10

// Input is what the score of one node depends on.
type Input struct {
	// Cached is the bytes of the pod's data cached on the node.
	Cached int64
	// Recent is the (decayed) number of data pods recently scored onto the
	// node; it damps the node's score so that a burst of pods does not pile
	// onto one node beyond what it can take.
	Recent float64
}

// Scores returns a score in 0..Max per node: the node's cached bytes
// relative to the node holding the most (that node gets Max), multiplied by
// the damping factor 1 / (1 + Recent/dampingPods), rounded to the nearest
// integer and clamped. When no node holds any bytes every score is 0 (a
// zero range gives no opinion). dampingPods <= 0 disables damping.
func Scores(nodes []Input, dampingPods float64) []int64 {
	out := make([]int64, len(nodes))
	var best int64
	for _, n := range nodes {
		best = max(best, n.Cached)
	}
	if best <= 0 {
		return out
	}
	for i, n := range nodes {
		if n.Cached <= 0 {
			continue
		}
		s := float64(Max) * float64(n.Cached) / float64(best)
		s *= Damping(n.Recent, dampingPods)
		out[i] = clamp(int64(math.Round(s)), 0, Max)
	}
	return out
}

// Damping is the factor applied to a node's score for recent pods placed
// on it: 1 with none, 1/2 at dampingPods, approaching 0 beyond.
func Damping(recent, dampingPods float64) float64 {
	if dampingPods <= 0 || recent <= 0 || math.IsNaN(recent) {
		return 1
	}
	return 1 / (1 + recent/dampingPods)
}

// Keep reports, per node, whether it holds at least minFraction of the
// bytes the best node holds (hard placement). When no node holds any bytes
// every node is kept: a pod is never stranded on empty caches.
func Keep(cached []int64, minFraction float64) []bool {
	out := make([]bool, len(cached))
	var best int64
	for _, c := range cached {
		best = max(best, c)
	}
	for i, c := range cached {
		out[i] = best <= 0 || (c > 0 && float64(c) >= minFraction*float64(best))
	}
	return out
}

func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}
