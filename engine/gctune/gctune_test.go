package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		floor, live uint64
		want        int
	}{
		{floor: 256 << 20, live: 2 << 20, want: 12700}, // goal 2 MiB × 128 = 256 MiB
		{floor: 256 << 20, live: 128 << 20, want: 100}, // floor = 2 × live: Go's default
		{floor: 256 << 20, live: 1 << 30, want: 100},   // a big live heap: GOGC=100's goal
		{floor: 256 << 20, live: 0, want: 25500},       // an empty heap counts as 1 MiB
		{floor: 256 << 20, live: 100 << 20, want: 156}, // goal 100 MiB × 2.56
		{floor: 1 << 60, live: 1 << 20, want: 1 << 20}, // capped
	} {
		if got := Percent(tc.floor, tc.live); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.floor, tc.live, got, tc.want)
		}
	}
}

// The tuner raises the percent after each collection and restores the
// old one at Stop.
func TestTunerFollowsCollections(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tu := Start(1 << 30)
	if tu == nil {
		t.Fatal("Start with a floor and no GOGC returned nil")
	}
	debug.SetGCPercent(100) // undo Start's own tune: the finalizer must redo it
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			t.Fatal("GC percent not raised within 10 s of collections")
		}
		runtime.GC()
		runtime.Gosched()
	}
	tu.Stop()
	tu.Stop()
	if pct := gogc(); pct != 100 {
		t.Fatalf("after Stop: GC percent %d, want the 100 of before", pct)
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestOperatorWins(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start(1<<30) != nil {
		t.Fatal("Start overrode GOGC")
	}
	var nilTuner *Tuner
	nilTuner.Stop()
}
