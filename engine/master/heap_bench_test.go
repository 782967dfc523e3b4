package master

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// TestHeapPerFile (make bench-meta) measures the master's live Go heap
// after creating ALCOVE_BENCH_HEAP_FILES files (default 200 k) and a full
// GC, against the heap before: the namespace lives in the bbolt store
// (mmap, off the Go heap), so this must not grow with the file count.
// The baseline is the same master before the files, in the same run.
func TestHeapPerFile(t *testing.T) {
	if os.Getenv("ALCOVE_BENCH") == "" {
		t.Skip("set ALCOVE_BENCH=1 (make bench-meta)")
	}
	files := 200_000
	if s := os.Getenv("ALCOVE_BENCH_HEAP_FILES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("ALCOVE_BENCH_HEAP_FILES=%q: want a positive count", s)
		}
		files = n
	}
	c := newCluster(t)
	ctx := context.Background() // c.ctx ends 30 s after start
	if _, err := c.fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: "/heap", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	live := func() uint64 {
		runtime.GC()
		runtime.GC() // the second cycle frees what the first one's finalizers released
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := live()
	const callers = 32
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < files; i += callers {
				p := fmt.Sprintf("/heap/d%03d/f%07d", i%1000, i)
				r, err := c.fs.CreateFile(ctx, &apiv1.CreateFileRequest{Path: p, Recursive: true, WriteType: apiv1.WriteType_MUST_CACHE})
				if err == nil {
					_, err = c.fs.CompleteFile(ctx, &apiv1.CompleteFileRequest{Path: p, FileId: r.GetFileInfo().GetFileId()})
				}
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	after := live()
	grew := int64(after) - int64(before)
	fmt.Printf("| %d files in 1000 directories | live Go heap before %.1f MiB, after %.1f MiB: %+.0f bytes per file |\n",
		files, float64(before)/(1<<20), float64(after)/(1<<20), float64(grew)/float64(files))
}
