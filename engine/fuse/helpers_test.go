package fuse

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/ramdisk"
	"github.com/alcove-io/alcove/engine/worker"
	"github.com/alcove-io/alcove/test/fsx"
	"github.com/alcove-io/alcove/test/prereq"
)

const testNode = "fuse-test-node"

// cluster is a real master and worker in this process.
type cluster struct {
	m      *master.Master
	w      *worker.Worker
	ufs    string
	socket string
	dir    string
	memDir string
}

type clusterOpts struct {
	quota     int64
	writeType apiv1.WriteType
	ramdisk   bool // the MEM tier on its own huge-page tmpfs, as `alcove local` runs it
}

func startCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	prereq.Root(t) // mount(2)
	prereq.DevFuse(t)
	if o.quota == 0 {
		o.quota = 256 << 20
	}
	dir := t.TempDir()
	ufs := filepath.Join(dir, "ufs")
	os.MkdirAll(ufs, 0o755)
	ctx := context.Background()
	m, err := master.New(master.Config{Dir: filepath.Join(dir, "master"), Address: "127.0.0.1:0", RootUFS: ufs})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// A unique directory: test processes of other packages or checkouts may
	// run at the same time (t.TempDir's base name is the same in each).
	memDir, err := os.MkdirTemp("/dev/shm", "alcove-fuse-test-")
	if err != nil {
		memDir = filepath.Join(dir, "mem")
	}
	// The worker leaves its ramdisk mounted for a restart; the test unmounts it.
	t.Cleanup(func() { ramdisk.UnmountAt(memDir); os.RemoveAll(memDir) })
	sock := filepath.Join(dir, "w.sock")
	w, err := worker.New(worker.Config{
		MasterAddresses: []string{m.Addr()}, Address: "127.0.0.1:0", Node: testNode, DomainSocket: sock,
		Tiers:             []blockstore.TierConfig{{Alias: "MEM", Dir: memDir, QuotaBytes: o.quota}},
		Ramdisk:           o.ramdisk,
		HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &cluster{m: m, w: w, ufs: ufs, socket: sock, dir: dir, memDir: memDir}
}

// ramdiskHuge reports whether the MEM tier sits on a huge-page tmpfs.
func (c *cluster) ramdiskHuge() bool {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == c.memDir && strings.Contains(l, "huge=within_size") {
			return true
		}
	}
	return false
}

func (c *cluster) client(t testing.TB, wt apiv1.WriteType, bs int64) *client.Client {
	t.Helper()
	if bs == 0 {
		bs = 1 << 20
	}
	cl, err := client.New(client.Config{MasterAddresses: []string{c.m.Addr()}, Node: testNode, WriteType: wt, BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	// Wait for the worker to register.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, err := cl.Workers(context.Background())
		if err == nil && len(ws) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not register: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cl
}

type env struct {
	*cluster
	c   *client.Client
	srv *Server
	mnt string
}

func mountEnv(t testing.TB, o clusterOpts, mod func(*Config)) *env {
	t.Helper()
	cl := startCluster(t, o)
	wt := o.writeType
	if wt == 0 {
		wt = apiv1.WriteType_MUST_CACHE
	}
	c := cl.client(t, wt, 0)
	mnt := filepath.Join(cl.dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Debug: os.Getenv("FUSE_DEBUG") != "", MountPoint: mnt, Client: c, StageDir: filepath.Join(cl.dir, "stage"), AttrTimeout: time.Millisecond, EntryTimeout: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := Mount(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return &env{cluster: cl, c: c, srv: srv, mnt: mnt}
}

func (e *env) p(name string) string { return filepath.Join(e.mnt, name) }

func randData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// put writes a file through the client (not the mount).
func (e *env) put(t testing.TB, path string, data []byte) {
	t.Helper()
	w, err := e.c.Create(context.Background(), path, client.WriteOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	fsx.Equal(t, what, got, want)
}

// ensureFusectl mounts the fusectl filesystem when it is not mounted yet
// (a fresh machine may not have it); aborting a connection needs it.
func ensureFusectl(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/fuse/connections/"); err != nil {
		t.Fatalf("no /sys/fs/fuse/connections: %v", err)
	}
	if ents, err := os.ReadDir("/sys/fs/fuse/connections"); err == nil && len(ents) > 0 {
		return
	}
	if err := syscall.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, ""); err != nil && err != syscall.EBUSY {
		t.Fatalf("mount fusectl: %v", err)
	}
}

// abortFile is the fusectl file that aborts the FUSE connection mounted at
// mnt (found while the mount still answers).
func abortFile(mnt string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", mnt, err)
	}
	return filepath.Join("/sys/fs/fuse/connections", strconv.FormatUint(uint64(unix.Minor(st.Dev)), 10), "abort"), nil
}

// abortConnection aborts the FUSE connection mounted at mnt, as a daemon
// crash would: its requests fail with ECONNABORTED, nothing waits any more.
func abortConnection(mnt string) error {
	p, err := abortFile(mnt)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("abort the connection of %s: %w", mnt, err)
	}
	return nil
}
