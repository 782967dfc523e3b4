package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestLoadThroughput measures the job tier (make bench-load): a LOAD job of
// a cold tree onto two workers next to reading the same bytes straight from
// the UFS directory with the same concurrency, in the same run; and the
// latency of a reader of a cached file on the same machine while a load
// runs, without and with the job workers' bandwidth cap.
func TestLoadThroughput(t *testing.T) {
	if os.Getenv("ALCOVE_BENCH") == "" {
		t.Skip("set ALCOVE_BENCH=1 (make bench-load)")
	}
	totalMB := envInt("ALCOVE_BENCH_LOAD_MB", 1536)
	capMB := envInt("ALCOVE_BENCH_CAP_MB", 100)
	const fileMB, slots = 64, 4
	c := alcovetest.Start(t, "a", "b")
	dir := filepath.Join(c.UFS(), "tree")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{3})
	var files []string
	for i := 0; i*fileMB < totalMB; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		for range fileMB {
			_, _ = r.Read(buf)
			if _, err := f.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		files = append(files, p)
	}
	total := int64(len(files)) * fileMB << 20
	ctx := context.Background()
	cl := c.Client("a")
	// The reader's file: cached on node a.
	c.Write("a", "/hot", 64<<20)

	// Baseline: the same bytes straight from the UFS directory, 2×slots at
	// once (as many as the two job workers run), cold (out of the page cache)
	// as the load finds them.
	ufsRate := func() float64 {
		start := time.Now()
		var wg sync.WaitGroup
		ch := make(chan string, len(files))
		for _, f := range files {
			ch <- f
		}
		close(ch)
		for range 2 * slots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ch {
					f, err := os.Open(p)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
					f.Close()
				}
			}()
		}
		wg.Wait()
		return float64(total) / time.Since(start).Seconds() / 1e9
	}
	base := max(dropCache(t, files, ufsRate), dropCache(t, files, ufsRate))

	run := func(bandwidth int64) (rate float64, lat []time.Duration) {
		j := c.StartJobs(alcovetest.JobOptions{Slots: slots, BandwidthBytes: bandwidth})
		defer j.Close()
		stop := make(chan struct{})
		done := make(chan []time.Duration)
		go func() { done <- readLatency(ctx, t, cl, stop) }()
		dropCache(t, files, func() float64 { return 0 })
		start := time.Now()
		id, err := j.Client.Submit(ctx, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/tree"})
		if err != nil {
			t.Fatal(err)
		}
		info := j.Wait(id, 10*time.Minute)
		rate = float64(total) / time.Since(start).Seconds() / 1e9
		close(stop)
		lat = <-done
		if info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetPercent() != 100 {
			t.Fatalf("load: %v", info)
		}
		if _, err := cl.Free(ctx, "/tree", true, false); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for cachedBytes(t, cl, "/tree") > 0 {
			if time.Now().After(deadline) {
				t.Fatal("tree not freed")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return rate, lat
	}
	idleStop := make(chan struct{})
	time.AfterFunc(3*time.Second, func() { close(idleStop) })
	idle := readLatency(ctx, t, cl, idleStop)
	loadRate, loadLat := run(0)
	capRate, capLat := run(int64(capMB) << 20)
	fmt.Printf("load of a cold %d MiB tree (out of the page cache) (%d files) onto 2 workers, %d tasks per job worker:\n", total>>20, len(files), slots)
	fmt.Printf("  UFS read, same bytes, %d at once (baseline)  %.2f GB/s\n", 2*slots, base)
	fmt.Printf("  LOAD job, submit to COMPLETED              %.2f GB/s (%.2f of the UFS read)\n", loadRate, loadRate/base)
	fmt.Printf("  LOAD job, cap %d MB/s per job worker       %.2f GB/s\n", capMB, capRate)
	fmt.Printf("1 MiB reads of a cached file (short-circuit) meanwhile: p50 / p99 / max\n")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{{"idle", idle}, {"during the load", loadLat}, {fmt.Sprintf("during the load capped at %d MB/s", capMB), capLat}} {
		p50, p99, mx := pct(row.lat, 50), pct(row.lat, 99), pct(row.lat, 100)
		fmt.Printf("  %-36s %8v %8v %8v  (%d reads; p99 +%v over idle)\n", row.name, p50, p99, mx, len(row.lat), (p99 - pct(idle, 99)).Round(time.Microsecond))
	}
}

// dropCache evicts the tree's files (only them) from the page cache, so
// that fn reads a cold tree from the disk, and returns fn's result.
func dropCache(t *testing.T, files []string, fn func() float64) float64 {
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return fn()
}

// readLatency reads 1 MiB at random offsets of /hot until stop.
func readLatency(ctx context.Context, t *testing.T, c *client.Client, stop <-chan struct{}) []time.Duration {
	r, err := c.OpenFile(ctx, "/hot", apiv1.ReadType_CACHE)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	var out []time.Duration
	for {
		select {
		case <-stop:
			return out
		default:
		}
		off := rand.Int64N(63) << 20
		start := time.Now()
		if _, err := r.ReadAt(buf, off); err != nil {
			t.Error(err)
			return out
		}
		out = append(out, time.Since(start))
		time.Sleep(5 * time.Millisecond)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := min(len(s)-1, len(s)*p/100)
	return s[i].Round(time.Microsecond)
}

func cachedBytes(t *testing.T, c *client.Client, p string) int64 {
	infos, err := c.ListStatus(context.Background(), p, true, false)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range infos {
		for _, b := range f.GetFileBlockInfos() {
			n += int64(len(b.GetBlockInfo().GetLocations())) * b.GetBlockInfo().GetLength()
		}
	}
	return n
}
