package job_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// tree writes n files of size bytes under dir/sub in the UFS directory.
func tree(t *testing.T, ufsDir, sub string, n, size int) {
	t.Helper()
	dir := filepath.Join(ufsDir, sub)
	if err := os.MkdirAll(filepath.Join(dir, "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("f%02d", i))
		if i%3 == 2 {
			p = filepath.Join(dir, "nested", fmt.Sprintf("f%02d", i))
		}
		b := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cached returns, per node, the bytes of path's blocks cached there, and the
// bytes of complete files under it.
func cached(t *testing.T, c *client.Client, path string) (map[string]int64, int64) {
	t.Helper()
	infos, err := c.ListStatus(context.Background(), path, true, false)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int64{}
	var total int64
	for _, f := range infos {
		if f.GetFolder() {
			continue
		}
		total += f.GetLength()
		for _, b := range f.GetFileBlockInfos() {
			for _, l := range b.GetBlockInfo().GetLocations() {
				per[l.GetNode()] += b.GetBlockInfo().GetLength()
			}
		}
	}
	return per, total
}

func submit(t *testing.T, j *alcovetest.Jobs, spec *apiv1.JobSpec) int64 {
	t.Helper()
	id, err := j.Client.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLoad(t *testing.T) {
	const files, size = 12, 1 << 20
	for _, tc := range []struct {
		name        string
		spec        *apiv1.JobSpec
		wantNodes   []string // nodes that may hold blocks
		minPct      int64    // of the tree's bytes, counted once per copy
		maxPct      int64
		replication int
	}{
		{name: "all", spec: &apiv1.JobSpec{}, wantNodes: []string{"a", "b"}, minPct: 100, maxPct: 100},
		{name: "percent50", spec: &apiv1.JobSpec{Percent: 50}, wantNodes: []string{"a", "b"}, minPct: 50, maxPct: 50 + 100/files + 1},
		{name: "nodes", spec: &apiv1.JobSpec{Nodes: []string{"b"}}, wantNodes: []string{"b"}, minPct: 100, maxPct: 100},
		{name: "selector", spec: &apiv1.JobSpec{NodeSelector: map[string]string{"node": "a"}}, wantNodes: []string{"a"}, minPct: 100, maxPct: 100},
		{name: "replication2", spec: &apiv1.JobSpec{Replication: 2}, wantNodes: []string{"a", "b"}, minPct: 200, maxPct: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := alcovetest.Start(t, "a", "b")
			tree(t, c.UFS(), "data", files, size)
			j := c.StartJobs(alcovetest.JobOptions{})
			spec := tc.spec
			spec.Type, spec.Path = apiv1.JobType_LOAD, "/data"
			info := j.Wait(submit(t, j, spec), time.Minute)
			if info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetPercent() != 100 {
				t.Fatalf("job: %v", info)
			}
			per, total := cached(t, c.Client("a"), "/data")
			var sum int64
			for n, b := range per {
				if !strings.Contains(strings.Join(tc.wantNodes, ","), n) {
					t.Errorf("%d bytes cached on node %s, want only %v", b, n, tc.wantNodes)
				}
				sum += b
			}
			if pct := sum * 100 / total; pct < tc.minPct || pct > tc.maxPct {
				t.Fatalf("cached %d of %d bytes (%d%%), want %d..%d%%: %v", sum, total, pct, tc.minPct, tc.maxPct, per)
			}
			if tc.name == "all" && (per["a"] == 0 || per["b"] == 0) {
				t.Fatalf("a load onto two nodes left one empty: %v", per)
			}
			if tc.minPct == 100 {
				for _, f := range mustList(t, c.Client("a"), "/data") {
					if !f.GetFolder() && f.GetInAlcovePercentage() != 100 {
						t.Fatalf("%s: %d%% in Alcove", f.GetPath(), f.GetInAlcovePercentage())
					}
				}
			}
		})
	}
}

func writeFile(t *testing.T, p string, size int) {
	t.Helper()
	if err := os.WriteFile(p, bytes.Repeat([]byte{'z'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustList(t *testing.T, c *client.Client, p string) []*apiv1.FileInfo {
	t.Helper()
	infos, err := c.ListStatus(context.Background(), p, true, false)
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// A job worker that dies mid-load: its tasks finish on the other node.
func TestLoadJobWorkerLost(t *testing.T) {
	c := alcovetest.Start(t, "a", "b")
	tree(t, c.UFS(), "data", 16, 1<<20)
	j := c.StartJobs(alcovetest.JobOptions{BandwidthBytes: 2 << 20, Slots: 1})
	id := submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/data"})
	waitFor(t, func() bool { per, _ := cached(t, c.Client("a"), "/data"); return per["a"] > 0 })
	j.StopWorker("a")
	info := j.Wait(id, time.Minute)
	if info.GetState() != apiv1.JobState_JOB_COMPLETED {
		t.Fatalf("job: %v", info)
	}
	per, total := cached(t, c.Client("a"), "/data")
	if per["a"]+per["b"] != total || per["b"] == 0 {
		t.Fatalf("cached %v of %d", per, total)
	}
}

// A job master that stops mid-load resumes the job from its store.
func TestLoadResumesAfterJobMasterRestart(t *testing.T) {
	c := alcovetest.Start(t, "a", "b")
	tree(t, c.UFS(), "data", 16, 1<<20)
	j := c.StartJobs(alcovetest.JobOptions{BandwidthBytes: 4 << 20, Slots: 1})
	id := submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/data"})
	waitFor(t, func() bool { per, _ := cached(t, c.Client("a"), "/data"); return per["a"]+per["b"] > 0 })
	j.StopMaster()
	per, total := cached(t, c.Client("a"), "/data")
	if per["a"]+per["b"] >= total {
		t.Fatalf("the load finished before the restart: %v of %d", per, total)
	}
	j.StartMaster()
	info := j.Wait(id, time.Minute)
	if info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetPercent() != 100 {
		t.Fatalf("job after restart: %v", info)
	}
}

// Canceling a running job stops it; its state says so.
func TestCancel(t *testing.T) {
	c := alcovetest.Start(t, "a")
	tree(t, c.UFS(), "data", 16, 1<<20)
	j := c.StartJobs(alcovetest.JobOptions{BandwidthBytes: 1 << 20, Slots: 1})
	id := submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/data"})
	if err := j.Client.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	info := j.Wait(id, 10*time.Second)
	if info.GetState() != apiv1.JobState_JOB_CANCELED {
		t.Fatalf("job: %v", info)
	}
	time.Sleep(time.Second) // tasks that were running stop; nothing more starts
	per, total := cached(t, c.Client("a"), "/data")
	if per["a"] >= total {
		t.Fatalf("canceled load still cached everything: %v", per)
	}
}

func TestSubmitErrors(t *testing.T) {
	c := alcovetest.Start(t, "a")
	j := c.StartJobs(alcovetest.JobOptions{})
	for _, spec := range []*apiv1.JobSpec{
		{Type: apiv1.JobType_LOAD, Path: "/missing"},
		{Type: apiv1.JobType_LOAD, Path: "relative"},
		{Path: "/"},
		{Type: apiv1.JobType_LOAD, Path: "/", Percent: 101},
		{Type: apiv1.JobType_COPY, Path: "/", Dst: "/x"},
		{Type: apiv1.JobType_REPLICATE, Path: "/"},
	} {
		if _, err := j.Client.Submit(context.Background(), spec); err == nil {
			t.Errorf("submit %v: no error", spec)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sum(t *testing.T, c *client.Client, p string) [32]byte {
	t.Helper()
	r, err := c.OpenFile(context.Background(), p, apiv1.ReadType_NO_CACHE)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := r.WriteTo(h); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// Copy and move a tree across two mounts.
func TestCopyAndMoveAcrossMounts(t *testing.T) {
	c := alcovetest.Start(t, "a", "b")
	tree(t, c.UFS(), "src", 7, 300<<10)
	other := t.TempDir()
	cl := c.Client("a")
	if err := cl.Mount(context.Background(), "/other", other, false, false, nil); err != nil {
		t.Fatal(err)
	}
	j := c.StartJobs(alcovetest.JobOptions{})
	info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_COPY, Path: "/src", Dst: "/other/copy"}), time.Minute)
	if info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetFilesDone() != 7 {
		t.Fatalf("copy: %v", info)
	}
	for _, f := range mustList(t, cl, "/src") {
		if f.GetFolder() {
			continue
		}
		dst := "/other/copy" + strings.TrimPrefix(f.GetPath(), "/src")
		if sum(t, cl, f.GetPath()) != sum(t, cl, dst) {
			t.Fatalf("%s and %s differ", f.GetPath(), dst)
		}
		if _, err := os.Stat(filepath.Join(other, "copy", strings.TrimPrefix(f.GetPath(), "/src"))); err != nil {
			t.Fatalf("copy not in the destination UFS: %v", err)
		}
	}
	// Copying again is idempotent (same content); then move the copy back.
	if info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_COPY, Path: "/src", Dst: "/other/copy"}), time.Minute); info.GetState() != apiv1.JobState_JOB_COMPLETED {
		t.Fatalf("second copy: %v", info)
	}
	info = j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_MOVE, Path: "/other/copy", Dst: "/moved"}), time.Minute)
	if info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetFilesDone() != 7 {
		t.Fatalf("move: %v", info)
	}
	if _, err := cl.GetStatus(context.Background(), "/other/copy"); err == nil {
		t.Fatal("move left the source behind")
	}
	if _, err := os.Stat(filepath.Join(other, "copy")); !os.IsNotExist(err) {
		t.Fatalf("move left the source in the UFS: %v", err)
	}
	if got := len(mustList(t, cl, "/moved")); got != 8 { // 7 files + nested/
		t.Fatalf("moved tree has %d entries", got)
	}
}

// Free and persist jobs.
func TestFreeAndPersist(t *testing.T) {
	c := alcovetest.Start(t, "a")
	tree(t, c.UFS(), "data", 4, 100<<10)
	j := c.StartJobs(alcovetest.JobOptions{})
	if info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/data"}), time.Minute); info.GetState() != apiv1.JobState_JOB_COMPLETED {
		t.Fatalf("load: %v", info)
	}
	if info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_FREE, Path: "/data"}), time.Minute); info.GetState() != apiv1.JobState_JOB_COMPLETED || info.GetFilesDone() != 4 {
		t.Fatalf("free: %v", info)
	}
	waitFor(t, func() bool { per, _ := cached(t, c.Client("a"), "/data"); return per["a"] == 0 })

	c.WriteType("a", "/cacheonly/x", 200<<10, apiv1.WriteType_MUST_CACHE)
	info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_PERSIST, Path: "/cacheonly"}), time.Minute)
	if info.GetState() != apiv1.JobState_JOB_COMPLETED {
		t.Fatalf("persist: %v", info)
	}
	st, err := c.Client("a").GetStatus(context.Background(), "/cacheonly/x")
	if err != nil || st.GetPersistenceState() != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("after persist: %v %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(c.UFS(), "cacheonly", "x")); err != nil || fi.Size() != 200<<10 {
		t.Fatalf("persisted file in the UFS: %v %v", fi, err)
	}
}
