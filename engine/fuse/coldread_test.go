package fuse

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestColdReadDirect: files only the UFS has, at least ColdDirectMin
// large, are opened with direct io; read and mmap (the first open of the
// second file) give their bytes, their blocks land on the local worker,
// and the next open is passthrough (no READ reaches the daemon).
func TestColdReadDirect(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, func(c *Config) { c.ColdDirectMin = 1 << 20 })
	data := randData(21, 5<<20+7)
	for _, name := range []string{"cold.bin", "mapped.bin"} {
		if err := os.WriteFile(filepath.Join(e.ufs, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustEqual(t, "first read", mustRead(t, e.p("cold.bin")), data)
	f, err := os.Open(e.p("mapped.bin"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap of a direct-io file: %v", err)
	}
	mustEqual(t, "mmap", m, data)
	unix.Munmap(m)
	f.Close()
	if n := counter(e.srv.vfs.Metrics().ColdDirectOpens); n != 2 {
		t.Fatalf("%v direct-io opens of the cold files, want 2", n)
	}
	e.waitLocal(t, "/cold.bin")
	before := e.srv.ReadRequests()
	mustEqual(t, "cached read", mustRead(t, e.p("cold.bin")), data)
	if got := e.srv.ReadRequests() - before; got != 0 {
		t.Fatalf("%d READ requests for the cached file: no passthrough", got)
	}
}
