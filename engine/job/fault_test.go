package job_test

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/ufs"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// failingUFS is a fault injector over the real local UFS (a fake only in
// that it fails on purpose): reads of files whose name starts with "bad"
// always fail, as a UFS object with broken media or permissions would.
type failingUFS struct{ ufs.UFS }

func (f failingUFS) OpenRange(ctx context.Context, p string, off, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(path.Base(p), "bad") {
		return nil, fmt.Errorf("read %s: injected UFS read failure", p)
	}
	return f.UFS.OpenRange(ctx, p, off, length)
}

func init() {
	local, _, err := ufs.Resolve("file:///", nil)
	if err != nil {
		panic(err)
	}
	ufs.Register("failfs", func(*url.URL, map[string]string) (ufs.UFS, error) { return failingUFS{local}, nil })
}

// A file that fails every read is retried, then named in the job's failure
// report, while the rest of the tree loads.
func TestLoadReportsFailingFile(t *testing.T) {
	c := alcovetest.Start(t, "a", "b")
	dir := t.TempDir()
	tree(t, dir, "", 5, 256<<10)
	writeFile(t, dir+"/bad-file", 100<<10)
	cl := c.Client("a")
	if err := cl.Mount(context.Background(), "/failing", "failfs://"+dir, true, false, nil); err != nil {
		t.Fatal(err)
	}
	j := c.StartJobs(alcovetest.JobOptions{})
	info := j.Wait(submit(t, j, &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: "/failing"}), time.Minute)
	if info.GetState() != apiv1.JobState_JOB_FAILED {
		t.Fatalf("job: %v", info)
	}
	if len(info.GetFailed()) != 1 || info.GetFailed()[0].GetPath() != "/failing/bad-file" || info.GetFailed()[0].GetAttempts() != 3 ||
		!strings.Contains(info.GetFailed()[0].GetError(), "injected UFS read failure") || !strings.Contains(info.GetMessage(), "/failing/bad-file") {
		t.Fatalf("failure report: %v / %q", info.GetFailed(), info.GetMessage())
	}
	for _, f := range mustList(t, cl, "/failing") {
		if f.GetFolder() {
			continue
		}
		want := int32(100)
		if f.GetPath() == "/failing/bad-file" {
			want = 0
		}
		if f.GetInAlcovePercentage() != want {
			t.Fatalf("%s: %d%% cached, want %d", f.GetPath(), f.GetInAlcovePercentage(), want)
		}
	}
}

// replication.min: a standing REPLICATE job keeps two copies on distinct
// nodes, and re-replicates when a worker is lost.
func TestReplicationMinAfterWorkerLoss(t *testing.T) {
	c := alcovetest.Start(t, "a", "b", "c")
	tree(t, c.UFS(), "data", 6, 512<<10)
	j := c.StartJobs(alcovetest.JobOptions{ReplicationMin: 2})
	cl := c.Client("a")
	copies := func(exclude string) (min int) {
		min = 99
		for _, f := range mustList(t, cl, "/data") {
			for _, b := range f.GetFileBlockInfos() {
				n := 0
				for _, l := range b.GetBlockInfo().GetLocations() {
					if l.GetNode() != exclude {
						n++
					}
				}
				min = minInt(min, n)
			}
		}
		return min
	}
	waitFor(t, func() bool { return copies("") >= 2 })
	// Node c goes away (its worker and job worker); the master declares it
	// lost after its worker timeout and the checker makes new copies.
	j.StopWorker("c")
	if err := c.Workers["c"].Close(); err != nil {
		t.Fatal(err)
	}
	delete(c.Workers, "c")
	deadline := time.Now().Add(40 * time.Second)
	for copies("c") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("blocks not re-replicated: min copies off node c = %d", copies("c"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	jobs, err := j.Client.List(context.Background(), false)
	if err != nil || len(jobs) != 1 || jobs[0].GetSpec().GetType() != apiv1.JobType_REPLICATE {
		t.Fatalf("standing jobs: %v %v", jobs, err)
	}
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}
