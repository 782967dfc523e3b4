package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/test/testbin"
)

// TestMetaBench measures the master's metadata path (make bench-meta): a
// real `alcove master` process on loopback, driven over gRPC by concurrent
// callers. It creates ALCOVE_BENCH_META_FILES empty files (default 1 M;
// create + complete, as a writer does) in directories of up to 100 k
// entries, then measures getStatus/s, the listing of one 100 k-entry
// directory, the master's RSS and on-disk bytes, and the leader's start-up
// time after kill -9.
func TestMetaBench(t *testing.T) {
	if os.Getenv("ALCOVE_BENCH") == "" {
		t.Skip("set ALCOVE_BENCH=1 (make bench-meta)")
	}
	files := envInt("ALCOVE_BENCH_META_FILES", 1_000_000)
	conc := envInt("ALCOVE_BENCH_META_CONCURRENCY", 64)
	conns := envInt("ALCOVE_BENCH_META_CONNS", 8) // clients are many processes, each with its connection
	const dirSize = 100_000
	m := startMaster(t)
	ctx := security.OutgoingUser(context.Background(), "root", nil)
	fsm := apiv1.NewFileSystemMasterClient(m.conn)
	var clients []apiv1.FileSystemMasterClient
	for range conns {
		clients = append(clients, apiv1.NewFileSystemMasterClient(m.dial(t)))
	}
	var caller atomic.Int64
	client := func() apiv1.FileSystemMasterClient { return clients[int(caller.Add(1))%len(clients)] }

	ndirs := (files + dirSize - 1) / dirSize
	for d := range ndirs {
		if _, err := fsm.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: benchDir(d), Recursive: true}); err != nil {
			t.Fatal(err)
		}
	}
	path := func(i int) string { return fmt.Sprintf("%s/f%06d", benchDir(i/dirSize), i%dirSize) }

	// Creates: each caller takes the next index.
	var next atomic.Int64
	start := time.Now()
	stopProgress := progress(t, "created", files, func() int64 { return min(next.Load(), int64(files)) }, start)
	err := parallel(conc, func() error {
		fsm := client()
		for {
			i := int(next.Add(1) - 1)
			if i >= files {
				return nil
			}
			resp, err := fsm.CreateFile(ctx, &apiv1.CreateFileRequest{Path: path(i), WriteType: apiv1.WriteType_MUST_CACHE})
			if err != nil {
				return fmt.Errorf("create %s: %w", path(i), err)
			}
			if _, err := fsm.CompleteFile(ctx, &apiv1.CompleteFileRequest{Path: path(i), FileId: resp.GetFileInfo().GetFileId()}); err != nil {
				return fmt.Errorf("complete %s: %w", path(i), err)
			}
		}
	})
	stopProgress()
	if err != nil {
		t.Fatal(err)
	}
	createTook := time.Since(start)

	// getStatus: random existing files, for a fixed time.
	const statFor = 15 * time.Second
	var stats atomic.Int64
	deadline := time.Now().Add(statFor)
	err = parallel(conc, func() error {
		fsm := client()
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for n := 0; time.Now().Before(deadline); n++ {
			if _, err := fsm.GetStatus(ctx, &apiv1.GetStatusRequest{Path: path(r.IntN(files))}); err != nil {
				return err
			}
			stats.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	statRate := float64(stats.Load()) / statFor.Seconds()

	// Listing the first directory (dirSize entries when files ≥ dirSize).
	listBest, listed := time.Duration(1<<62), 0
	for range 3 {
		s := time.Now()
		resp, err := fsm.ListStatus(ctx, &apiv1.ListStatusRequest{Path: benchDir(0)})
		if err != nil {
			t.Fatal(err)
		}
		listBest, listed = min(listBest, time.Since(s)), len(resp.GetFileInfos())
	}

	mem := m.memory(t)
	disk := dirBytes(t, filepath.Join(m.dir, "master"))

	// Leader start-up: kill -9, restart, time to the first answered getStatus.
	m.kill9(t)
	s := time.Now()
	m.start(t)
	for {
		if _, err := fsm.GetStatus(ctx, &apiv1.GetStatusRequest{Path: path(files - 1)}); err == nil {
			break
		}
		if time.Since(s) > 10*time.Minute {
			t.Fatalf("master did not answer within 10 min of a restart\n%s", m.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	startup := time.Since(s)

	perM := float64(1_000_000) / float64(files)
	fmt.Printf("\n| %d files, %d callers on %d connections | value |\n| --- | --- |\n", files, conc, conns)
	fmt.Printf("| creates (create + complete) | %.0f files/s (%v) |\n", float64(files)/createTook.Seconds(), createTook.Round(time.Second))
	fmt.Printf("| getStatus | %.0f /s |\n", statRate)
	fmt.Printf("| listStatus of a %d-entry directory | %v (best of 3) |\n", listed, listBest.Round(time.Millisecond))
	mib := func(n int64) string {
		return fmt.Sprintf("%.0f MiB (%.0f MiB per million files)", float64(n)/(1<<20), float64(n)/(1<<20)*perM)
	}
	fmt.Printf("| master RSS, anonymous (heap, stacks; bounded by the GC heap floor, not by files) | %.0f MiB |\n", float64(mem.anon)/(1<<20))
	fmt.Printf("| master RSS, file-backed (metadata store mmap; reclaimable) | %s |\n", mib(mem.file))
	fmt.Printf("| on disk (journal + metadata) | %.0f MiB (%.0f MiB per million files) |\n", float64(disk)/(1<<20), float64(disk)/(1<<20)*perM)
	fmt.Printf("| leader start-up after kill -9 | %v |\n", startup.Round(time.Millisecond))
}

func benchDir(d int) string { return fmt.Sprintf("/bench/d%03d", d) }

// parallel runs fn on n goroutines and returns the first error.
func parallel(n int, fn func() error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// progress prints done/total every 10 s until stopped.
func progress(t *testing.T, what string, total int, done func() int64, start time.Time) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				n := done()
				t.Logf("%s %d of %d (%.0f/s)", what, n, total, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// benchMaster is an `alcove master` process.
type benchMaster struct {
	bin, dir, addr string
	web            int
	cmd            *exec.Cmd
	log            *bytes.Buffer
	conn           *grpc.ClientConn
}

func startMaster(t *testing.T) *benchMaster {
	t.Helper()
	bin := testbin.Alcove(t)
	ports := testbin.FreePorts(t, 2)
	m := &benchMaster{bin: bin, dir: t.TempDir(), addr: "127.0.0.1:" + strconv.Itoa(ports[0]), web: ports[1]}
	m.start(t)
	t.Cleanup(func() {
		if m.cmd != nil {
			m.cmd.Process.Signal(syscall.SIGTERM)
			m.cmd.Wait()
		}
	})
	m.conn = m.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := apiv1.NewMetaMasterClient(m.conn).GetMasterInfo(ctx, &apiv1.GetMasterInfoRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("master did not come up: %v\n%s", err, m.log.String())
	}
	return m
}

// dial opens a connection of its own to the master.
func (m *benchMaster) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (m *benchMaster) start(t *testing.T) {
	t.Helper()
	m.log = &bytes.Buffer{}
	_, port, _ := strings.Cut(m.addr, ":")
	m.cmd = exec.Command(m.bin, "master", "--dir", filepath.Join(m.dir, "master"), "--root-ufs", filepath.Join(m.dir, "ufs"),
		"--port", port, "--web-port", strconv.Itoa(m.web))
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	// ALCOVE_BENCH_META_MASTER_ENV="GOGC=400 ..." tunes the master alone.
	m.cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("ALCOVE_BENCH_META_MASTER_ENV"))...)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (m *benchMaster) kill9(t *testing.T) {
	t.Helper()
	m.cmd.Process.Kill()
	m.cmd.Wait()
	m.cmd = nil
}

// memory is the master's resident memory: anonymous (heap, stacks: what
// the process needs) and file-backed (the metadata store's mmap, page
// cache the kernel reclaims under pressure). The live Go heap per file
// is TestHeapPerFile's (engine/master).
type memory struct{ anon, file int64 }

func (m *benchMaster) memory(t *testing.T) memory {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var mem memory
	for _, l := range strings.Split(string(b), "\n") {
		for key, dst := range map[string]*int64{"RssAnon:": &mem.anon, "RssFile:": &mem.file} {
			if v, ok := strings.CutPrefix(l, key); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatalf("%s in /proc/PID/status: %v", key, err)
				}
				*dst = kb << 10
			}
		}
	}
	if mem.anon == 0 {
		t.Fatalf("master memory incomplete: %+v", mem)
	}
	return mem
}

// dirBytes is the disk space used by the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
