package master

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// BenchmarkCacheIndex1MBlocks fills the node cache index with 1 M blocks
// (125,000 files of 8 blocks in 2,000 volumes, each block on a random one
// of 1,000 nodes) and reports the time per block add and the index's heap.
func BenchmarkCacheIndex1MBlocks(b *testing.B) {
	const files, blocksPerFile, volumes, nodes = 125_000, 8, 2000, 1000
	for range b.N {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		x := newCacheIndex()
		x.setMounts([]string{"/", "/data"})
		names := make([]string, nodes)
		for i := range names {
			names[i] = fmt.Sprintf("node-%04d", i)
		}
		paths := make(map[int64]string, files)
		for f := range files {
			paths[int64(f+1)] = fmt.Sprintf("/volumes/pvc-%04d/part-%06d", f%volumes, f)
		}
		x.setPaths(paths)
		paths = nil
		r := rand.New(rand.NewPCG(1, 2))
		start := time.Now()
		for f := range files {
			for range blocksPerFile {
				x.add(names[r.IntN(nodes)], int64(f+1), 64<<20)
			}
		}
		elapsed := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		b.ReportMetric(float64(elapsed.Nanoseconds())/(files*blocksPerFile), "ns/block-add")
		b.ReportMetric(heap, "index-MiB")
		b.Logf("master node cache index: %d blocks, %d files, %d (node, prefix) entries; %v per block add; heap %.0f MiB",
			files*blocksPerFile, files, len(x.bytes), elapsed/(files*blocksPerFile), heap)
		runtime.KeepAlive(x)
	}
}
