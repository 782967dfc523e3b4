package score

import (
	"math"
	"slices"
	"testing"
)

func TestScores(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []Input
		damping float64
		want    []int64
	}{
		{name: "no nodes", nodes: nil, want: []int64{}},
		{name: "nothing cached anywhere", nodes: []Input{{}, {}, {}}, want: []int64{0, 0, 0}},
		{name: "best gets max", nodes: []Input{{Cached: 20}, {Cached: 70}, {Cached: 0}}, want: []int64{3, 10, 0}},
		{name: "equal nodes", nodes: []Input{{Cached: 5}, {Cached: 5}}, want: []int64{10, 10}},
		{name: "tiny share rounds to zero", nodes: []Input{{Cached: 1}, {Cached: 1000}}, want: []int64{0, 10}},
		{name: "half rounds up", nodes: []Input{{Cached: 50}, {Cached: 100}}, want: []int64{5, 10}},
		{name: "negative bytes treated as none", nodes: []Input{{Cached: -5}, {Cached: 10}}, want: []int64{0, 10}},
		{name: "huge values do not overflow", nodes: []Input{{Cached: math.MaxInt64}, {Cached: math.MaxInt64 / 2}}, want: []int64{10, 5}},
		{name: "damping halves at dampingPods", nodes: []Input{{Cached: 100, Recent: 10}, {Cached: 100}}, damping: 10, want: []int64{5, 10}},
		{name: "damping lets the runner-up win", nodes: []Input{{Cached: 100, Recent: 30}, {Cached: 70}}, damping: 10, want: []int64{3, 7}},
		{name: "damping disabled", nodes: []Input{{Cached: 100, Recent: 1000}}, damping: 0, want: []int64{10}},
		{name: "NaN recent ignored", nodes: []Input{{Cached: 100, Recent: math.NaN()}}, damping: 10, want: []int64{10}},
		{name: "damping never raises a score", nodes: []Input{{Cached: 0, Recent: -4}}, damping: 10, want: []int64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Scores(tt.nodes, tt.damping)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Scores(%v, %v) = %v, want %v", tt.nodes, tt.damping, got, tt.want)
			}
			for _, s := range got {
				if s < 0 || s > Max {
					t.Fatalf("score %d out of 0..%d", s, Max)
				}
			}
		})
	}
}

func TestKeep(t *testing.T) {
	tests := []struct {
		name     string
		cached   []int64
		fraction float64
		want     []bool
	}{
		{name: "none cached keeps all", cached: []int64{0, 0}, fraction: 0.5, want: []bool{true, true}},
		{name: "fraction of the best", cached: []int64{20, 70, 0}, fraction: 0.5, want: []bool{false, true, false}},
		{name: "low fraction keeps any holder", cached: []int64{20, 70, 0}, fraction: 0.1, want: []bool{true, true, false}},
		{name: "zero fraction keeps holders only", cached: []int64{20, 70, 0}, fraction: 0, want: []bool{true, true, false}},
		{name: "exact threshold kept", cached: []int64{50, 100}, fraction: 0.5, want: []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Keep(tt.cached, tt.fraction); !slices.Equal(got, tt.want) {
				t.Fatalf("Keep(%v, %v) = %v, want %v", tt.cached, tt.fraction, got, tt.want)
			}
		})
	}
}

func TestDamping(t *testing.T) {
	for _, tt := range []struct{ recent, pods, want float64 }{
		{0, 10, 1}, {10, 10, 0.5}, {30, 10, 0.25}, {5, 0, 1}, {-1, 10, 1},
	} {
		if got := Damping(tt.recent, tt.pods); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Damping(%v, %v) = %v, want %v", tt.recent, tt.pods, got, tt.want)
		}
	}
}
