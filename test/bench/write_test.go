package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/fuse"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestWriteThroughput measures writes, small files and listings (make
// bench-write, issue 15), each next to its baseline in the same run:
//   - cp -r of a tree of small files (ALCOVE_BENCH_FILES × 64 KiB, default
//     5,000) through a FUSE mount with ASYNC_THROUGH, into tmpfs and into
//     the UFS directory; the master calls it cost per file;
//   - ls -lR and a stat of every file of that tree from a fresh mount (the
//     kernel caches nothing) vs the same on tmpfs; every file read back;
//   - a sequential write of ALCOVE_BENCH_MB (default 1024) through the
//     mount vs the same bytes into the UFS directory, and with MUST_CACHE
//     vs into tmpfs;
//   - the first (cold) read of a file in the UFS directory through the
//     mount vs a raw read of it with coldReaders readers at once and with one;
//   - the master's CreateFile rate over gRPC at 1, 8 and 64 concurrent
//     clients vs the journal disk's raw fsync rate.
//
// The worker's MEM tier is on /dev/shm, the UFS and the master's journal on
// the disk of the temporary directory.
func TestWriteThroughput(t *testing.T) {
	if os.Getenv("ALCOVE_BENCH") == "" {
		t.Skip("set ALCOVE_BENCH=1 (make bench-write)")
	}
	nfiles := envInt("ALCOVE_BENCH_FILES", 5000)
	size := int64(envInt("ALCOVE_BENCH_MB", 1024)) << 20
	load0 := loadavg()
	shm, err := os.MkdirTemp("/dev/shm", "alcove-bench-write-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shm)
	tier := 3*size + 2*int64(nfiles)<<16 + 512<<20
	c := alcovetest.StartWith(t, alcovetest.Options{TierBytes: tier, TierDir: shm}, "n1")
	bm := &benchMounts{t: t, c: c}
	defer bm.close()
	var rows []row

	// Small files.
	src := filepath.Join(shm, "src")
	makeTree(t, src, nfiles)
	cp := func(dst string) float64 {
		start := time.Now()
		if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -r %s %s: %v: %s", src, dst, err, out)
		}
		return float64(nfiles) / time.Since(start).Seconds()
	}
	mnt := bm.mount(apiv1.WriteType_ASYNC_THROUGH)
	tmpfsRate := cp(filepath.Join(shm, "copy"))
	ufsRate := cp(filepath.Join(c.UFS(), "baseline-copy"))
	calls0 := c.MasterCalls()
	mountRate := cp(filepath.Join(mnt, "tree"))
	calls := alcovetest.CallsSince(c.MasterCalls(), calls0)
	persisted := timeIt(t, func() error { return waitPersisted(bm.cls[0], "/tree", nfiles) })
	allCalls := alcovetest.CallsSince(c.MasterCalls(), calls0)
	rows = append(rows,
		row{fmt.Sprintf("cp -r of %d × 64 KiB into tmpfs (baseline)", nfiles), fmt.Sprintf("%.0f files/s", tmpfsRate), ""},
		row{"same into the UFS directory (baseline)", fmt.Sprintf("%.0f files/s", ufsRate), ""},
		row{"same through the mount, ASYNC_THROUGH", fmt.Sprintf("%.0f files/s", mountRate),
			fmt.Sprintf("%.2f of tmpfs, %.2f of UFS dir (target ≥ 1,000 files/s)", mountRate/tmpfsRate, mountRate/ufsRate)},
		row{"master calls per file during cp", callsPerFile(calls, nfiles), ""},
		row{"all persisted (ASYNC_THROUGH) after the cp ended", secs(persisted), "calls per file until then: " + callsPerFile(allCalls, nfiles)})

	// Listings from a fresh mount: the kernel has nothing cached.
	lsTmpfs := timeIt(t, func() error { return exec.Command("ls", "-lR", filepath.Join(shm, "copy")).Run() })
	mnt = bm.remount()
	lsMount := timeIt(t, func() error { return exec.Command("ls", "-lR", filepath.Join(mnt, "tree")).Run() })
	statTmpfs := timeIt(t, func() error { return statAll(filepath.Join(shm, "copy")) })
	mnt = bm.remount()
	statMount := timeIt(t, func() error { return statAll(filepath.Join(mnt, "tree")) })
	mnt = bm.remount()
	readBack := timeIt(t, func() error { return compareTrees(src, filepath.Join(mnt, "tree")) })
	rows = append(rows,
		row{"ls -lR of the tree on tmpfs (baseline)", secs(lsTmpfs), ""},
		row{"ls -lR through a fresh mount", secs(lsMount), fmt.Sprintf("%.2f× tmpfs (target ≤ 2×)", lsMount.Seconds()/lsTmpfs.Seconds())},
		row{"stat of every file on tmpfs (baseline)", secs(statTmpfs), ""},
		row{"stat of every file through a fresh mount", secs(statMount), fmt.Sprintf("%.2f× tmpfs", statMount.Seconds()/statTmpfs.Seconds())},
		row{"every file read back and compared, fresh mount", secs(readBack), "all equal"})

	// Sequential writes.
	chunk := make([]byte, 64<<20)
	fill(chunk, 7)
	seqUFS := writeSeq(t, filepath.Join(c.UFS(), "seq-baseline.bin"), chunk, size)
	os.Remove(filepath.Join(c.UFS(), "seq-baseline.bin"))
	seqMount := writeSeq(t, filepath.Join(mnt, "seq.bin"), chunk, size)
	seqTmpfs := writeSeq(t, filepath.Join(shm, "seq.bin"), chunk, size)
	os.Remove(filepath.Join(shm, "seq.bin"))
	mc := bm.mountAlso(apiv1.WriteType_MUST_CACHE)
	seqMC := writeSeq(t, filepath.Join(mc, "seq-mc.bin"), chunk, size)
	// The same small files without persistence: what the persists cost
	// the creates (they share the journal).
	mcRate := cp(filepath.Join(mc, "tree-mc"))
	rows = append(rows, row{"cp -r of the tree through a MUST_CACHE mount (no persists)", fmt.Sprintf("%.0f files/s", mcRate), ""})
	rows = append(rows,
		row{fmt.Sprintf("write %d MiB into the UFS directory (baseline)", size>>20), gbs(seqUFS), ""},
		row{"same through the mount, ASYNC_THROUGH", gbs(seqMount), fmt.Sprintf("%.2f of the UFS dir (target ≥ 0.5)", seqMount/seqUFS)},
		row{"same into tmpfs (baseline)", gbs(seqTmpfs), ""},
		row{"same through the mount, MUST_CACHE", gbs(seqMC), fmt.Sprintf("%.2f of tmpfs (target ≥ 0.5)", seqMC/seqTmpfs)})

	// Cold reads.
	cold := filepath.Join(c.UFS(), "cold.bin")
	writeSeq(t, cold, chunk, size)
	chunk = nil
	rawPar := coldRead(t, cold, size, coldReaders)
	rawOne := coldRead(t, cold, size, 1)
	evict(t, cold)
	mountCold := readSeq(t, filepath.Join(mnt, "cold.bin"), size)
	rows = append(rows,
		row{fmt.Sprintf("cold read of the UFS file, %d readers (baseline)", coldReaders), gbs(rawPar), ""},
		row{"same, 1 reader (dd)", gbs(rawOne), ""},
		row{"first read through the mount (1 MiB reads)", gbs(mountCold), fmt.Sprintf("%.2f of %d readers (target ≥ 0.9), %.2f of 1", mountCold/rawPar, coldReaders, mountCold/rawOne)})

	// Master creates.
	fsyncRate := rawFsync(t, t.TempDir())
	rows = append(rows, row{"raw 4 KiB write + fdatasync on the journal's disk (baseline)", fmt.Sprintf("%.0f /s", fsyncRate), ""})
	var one float64
	for _, n := range []int{1, 8, 64} {
		r := createRate(t, c.MasterAddr, n)
		if n == 1 {
			one = r
		}
		rows = append(rows, row{fmt.Sprintf("master CreateFile over gRPC, %d clients", n), fmt.Sprintf("%.0f /s", r),
			fmt.Sprintf("%.2f× 1 client, %.2f× raw fsync", r/one, r/fsyncRate)})
	}
	stat := statRate(t, c.MasterAddr)
	rows = append(rows, row{"master GetStatus over gRPC, 1 client (no journal entry; reference)", fmt.Sprintf("%.0f /s", stat),
		fmt.Sprintf("%.0f µs a call vs %.0f µs a CreateFile", 1e6/stat, 1e6/one)})
	rows = append(rows, row{"load average before / after", load0 + " / " + loadavg(), ""})
	printRows(rows)
}

// coldReaders is how many readers the cold-read baseline runs at once:
// as many blocks as a client loads at once on a miss (the block read and
// the ones loaded ahead).
const coldReaders = 1 + client.LoadAhead

type row struct{ name, value, note string }

func printRows(rows []row) {
	fmt.Println("| | | |\n| --- | --- | --- |")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.note)
	}
}

// benchMounts are the FUSE mounts of one benchmark.
type benchMounts struct {
	t    *testing.T
	c    *alcovetest.Cluster
	srvs []*fuse.Server
	cls  []*client.Client
	main *fuse.Server
	wt   apiv1.WriteType
}

func (b *benchMounts) start(wt apiv1.WriteType, dir string) *fuse.Server {
	cl, err := client.New(client.Config{MasterAddresses: []string{b.c.MasterAddr}, Node: "n1", WriteType: wt,
		BlockSize: 64 << 20, RetryTimeout: 20 * time.Second})
	if err != nil {
		b.t.Fatal(err)
	}
	b.cls = append(b.cls, cl)
	srv, err := fuse.Mount(context.Background(), fuse.Config{MountPoint: dir, Client: cl, WriteType: wt})
	if err != nil {
		b.t.Fatal(err)
	}
	b.srvs = append(b.srvs, srv)
	return srv
}

// mount mounts / with write type wt as the main mount.
func (b *benchMounts) mount(wt apiv1.WriteType) string {
	dir := filepath.Join(b.t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.wt, b.main = wt, b.start(wt, dir)
	return dir
}

// remount replaces the main mount by a fresh one (nothing cached in the
// kernel) at the same place.
func (b *benchMounts) remount() string {
	dir := b.main.MountPoint()
	if err := b.main.Unmount(); err != nil {
		b.t.Fatal(err)
	}
	b.main = b.start(b.wt, dir)
	return dir
}

// mountAlso mounts / once more with write type wt.
func (b *benchMounts) mountAlso(wt apiv1.WriteType) string {
	dir := filepath.Join(b.t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.start(wt, dir)
	return dir
}

func (b *benchMounts) close() {
	for _, s := range b.srvs {
		_ = s.Unmount()
	}
	for _, cl := range b.cls {
		cl.Close()
	}
}

func fill(p []byte, seed uint64) {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(p)
}

// makeTree writes n files of 64 KiB of distinct random bytes, 100 per
// directory.
func makeTree(t *testing.T, dir string, n int) {
	buf := make([]byte, 64<<10)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fill(buf, uint64(i))
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func statAll(dir string) error {
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		_, err = os.Lstat(p)
		return err
	})
}

// compareTrees checks that every file of want has the same bytes in got.
func compareTrees(want, got string) error {
	return filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s differs: %d bytes, want %d", rel, len(b), len(a))
		}
		return nil
	})
}

func timeIt(t *testing.T, fn func() error) time.Duration {
	start := time.Now()
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// writeSeq writes size bytes (chunk repeated) to p with 1 MiB writes and
// closes it, like cp or dd bs=1M; GB/s including the close.
func writeSeq(t *testing.T, p string, chunk []byte, size int64) float64 {
	start := time.Now()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += 1 << 20 {
		o := off % int64(len(chunk))
		if _, err := f.Write(chunk[o : o+1<<20]); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", p, err)
	}
	return float64(size) / time.Since(start).Seconds() / 1e9
}

// readSeq reads p with 1 MiB reads (dd bs=1M).
func readSeq(t *testing.T, p string, size int64) float64 {
	start := time.Now()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if err != nil || n != size {
		t.Fatalf("read %s: %d bytes, %v", p, n, err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e9
}

// evict syncs p and drops it from the page cache.
func evict(t *testing.T, p string) {
	dropCache(t, []string{p}, func() float64 { return 0 })
}

// coldRead reads p, evicted from the page cache first, with readers
// goroutines each reading its contiguous share with 1 MiB preads.
func coldRead(t *testing.T, p string, size int64, readers int) float64 {
	evict(t, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	share := (size/int64(readers) + 1<<20 - 1) &^ (1<<20 - 1)
	var wg sync.WaitGroup
	var total atomic.Int64
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for off := int64(i) * share; off < min(size, int64(i+1)*share); off += 1 << 20 {
				n, err := f.ReadAt(buf, off)
				total.Add(int64(n))
				if err != nil && err != io.EOF {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if total.Load() != size {
		t.Fatalf("cold read of %s: %d bytes of %d", p, total.Load(), size)
	}
	return float64(size) / time.Since(start).Seconds() / 1e9
}

// rawFsync is the rate of 4 KiB in-place writes each followed by
// fdatasync in dir, for 2 seconds.
func rawFsync(t *testing.T, dir string) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	n := 0
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		buf[0]++
		if _, err := f.WriteAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// createRate is the master's CreateFile rate with n clients at once, each
// creating files in its own directory over its own gRPC connection, for
// 3 seconds.
func createRate(t *testing.T, addr string, n int) float64 {
	var count atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fs := apiv1.NewFileSystemMasterClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				_, err := fs.CreateFile(context.Background(), &apiv1.CreateFileRequest{
					Path: fmt.Sprintf("/creates/n%d/c%d/f%d", n, i, k), Recursive: true, WriteType: apiv1.WriteType_MUST_CACHE})
				if err != nil {
					t.Error(err)
					return
				}
				count.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}

// statRate is the master's GetStatus rate with one client for 2 seconds.
func statRate(t *testing.T, addr string) float64 {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fs := apiv1.NewFileSystemMasterClient(conn)
	n := 0
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		if _, err := fs.GetStatus(context.Background(), &apiv1.GetStatusRequest{Path: "/creates"}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// waitPersisted waits until the n files under dir are persisted (bounded).
func waitPersisted(c *client.Client, dir string, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		infos, err := c.ListStatus(context.Background(), dir, true, false)
		if err != nil {
			return err
		}
		done := 0
		for _, fi := range infos {
			if !fi.GetFolder() && fi.GetPersistenceState() == apiv1.PersistenceState_PERSISTED {
				done++
			}
		}
		if done >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d files under %s persisted after 10 minutes", done, n, dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// callsPerFile formats the calls per file, most frequent first.
func callsPerFile(calls map[string]uint64, files int) string {
	type kv struct {
		k string
		v uint64
	}
	var s []kv
	var total uint64
	for k, v := range calls {
		if v > 0 && k != "Heartbeat" && k != "ListStatus" { // the benchmark's own polling
			s = append(s, kv{k, v})
			total += v
		}
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v })
	var parts []string
	for _, e := range s {
		if float64(e.v)/float64(files) >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", e.k, float64(e.v)/float64(files)))
		}
	}
	return fmt.Sprintf("%.2f (%s)", float64(total)/float64(files), strings.Join(parts, ", "))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func gbs(r float64) string { return fmt.Sprintf("%.3f GB/s", r) }
