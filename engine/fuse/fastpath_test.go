package fuse

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// waitLocal waits until every block of path is reported cached on the test node.
func (e *env) waitLocal(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := e.c.GetStatus(context.Background(), path)
		if err == nil {
			ok := len(info.GetFileBlockInfos()) > 0
			for _, fbi := range info.GetFileBlockInfos() {
				found := false
				for _, l := range fbi.GetBlockInfo().GetLocations() {
					found = found || l.GetNode() == testNode
				}
				ok = ok && found
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not cached locally: %v %v", path, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPassthrough proves a locally cached file is read by the kernel from
// the worker's cache file: no READ request reaches the daemon.
func TestPassthrough(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	data := randData(10, 5<<20+777) // 6 blocks of 1 MiB
	e.put(t, "/cached.bin", data)
	e.waitLocal(t, "/cached.bin")

	before := e.srv.ReadRequests()
	for i := 0; i < 2; i++ {
		mustEqual(t, "passthrough read", mustRead(t, e.p("cached.bin")), data)
	}
	// Random reads too.
	f, err := os.Open(e.p("cached.bin"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 1 << 20, 3<<20 + 5, int64(len(data)) - 4096} {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "pread", buf, data[off:off+4096])
	}
	f.Close()
	if got := e.srv.ReadRequests() - before; got != 0 {
		t.Fatalf("the daemon received %d READ requests for a passthrough file, want 0", got)
	}
	if n := counter(e.srv.vfs.Metrics().PassthroughOpens); n < 3 {
		t.Fatalf("passthrough opens = %v", n)
	}

	// The control: with passthrough off, the same reads reach the daemon.
	e2 := mountEnv(t, clusterOpts{}, func(c *Config) { c.DisablePassthrough = true })
	e2.put(t, "/cached.bin", data)
	e2.waitLocal(t, "/cached.bin")
	mustEqual(t, "daemon read", mustRead(t, e2.p("cached.bin")), data)
	if e2.srv.ReadRequests() == 0 {
		t.Fatal("no READ requests without passthrough: the counter does not count")
	}
	if n := counter(e2.srv.vfs.Metrics().BytesShortCircuit); n < float64(len(data)) {
		t.Fatalf("short-circuit bytes = %v, want >= %d", n, len(data))
	}
}

// TestUFSRead reads a file that exists only in the UFS: the first read goes
// through the worker to the UFS, later ones come from the cache.
func TestUFSRead(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	data := randData(11, 3<<20+5)
	if err := os.WriteFile(filepath.Join(e.ufs, "fromufs.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "first read", mustRead(t, e.p("fromufs.bin")), data)
	if n := counter(e.srv.vfs.Metrics().BytesUFS); n == 0 {
		t.Fatal("no bytes counted from the UFS")
	}
	e.waitLocal(t, "/fromufs.bin")
	mustEqual(t, "cached read", mustRead(t, e.p("fromufs.bin")), data)
}

// TestNoSpace: with MUST_CACHE a file larger than the cache fails with
// ENOSPC, and the mount keeps answering.
func TestNoSpace(t *testing.T) {
	e := mountEnv(t, clusterOpts{quota: 4 << 20, writeType: apiv1.WriteType_MUST_CACHE}, nil)
	f, err := os.Create(e.p("big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := randData(12, 1<<20)
	var werr error
	for i := 0; i < 8 && werr == nil; i++ {
		_, werr = f.Write(chunk)
	}
	cerr := f.Close()
	if !errors.Is(werr, syscall.ENOSPC) && !errors.Is(cerr, syscall.ENOSPC) {
		t.Fatalf("write %v, close %v; want ENOSPC", werr, cerr)
	}
	// A commit that fails at the worker (not caught by the size check)
	// reports ENOSPC on close as well: fill the cache with pinned data.
	if _, err := os.Stat(e.mnt); err != nil {
		t.Fatalf("mount broken after ENOSPC: %v", err)
	}
	if err := os.WriteFile(e.p("small"), []byte("ok"), 0o644); err != nil {
		t.Fatalf("small write after ENOSPC: %v", err)
	}
}

func TestCheckMountBroken(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	if st, err := CheckMount(e.mnt); err != nil || st != MountHealthy {
		t.Fatalf("CheckMount = %v, %v; want healthy", st, err)
	}
	if st, _ := CheckMount(t.TempDir()); st != NotMounted {
		t.Fatalf("CheckMount of a plain dir = %v", st)
	}
	// Abort the connection as a daemon crash would.
	ensureFusectl(t)
	if err := abortConnection(e.mnt); err != nil {
		t.Fatal(err)
	}
	if got, err := CheckMount(e.mnt); err != nil || got != MountBroken {
		t.Fatalf("after abort: CheckMount = %v, %v (probe: %v); want broken", got, err, probe(e.mnt))
	}
	// Mounting again detaches the broken mount and serves.
	srv, err := Mount(context.Background(), Config{MountPoint: e.mnt, Client: e.c, StageDir: filepath.Join(e.dir, "stage2")})
	if err != nil {
		t.Fatalf("remount over a broken mount: %v", err)
	}
	defer srv.Unmount()
	if err := os.WriteFile(e.p("after"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "after remount", mustRead(t, e.p("after")), []byte("x"))
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
