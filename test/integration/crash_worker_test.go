package integration

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/crashfs"
)

// TestWorkerCacheCrashConsistency runs real `alcove worker`s whose SSD
// tiers are on crashfs (Strict model: only directory fsyncs make names
// durable) and take every block (their MEM tiers are too small for one). A
// client on another node writes files; at a random point, with a write in
// flight, every worker is killed with SIGKILL and the filesystem crashes (a
// power loss of the nodes), and the workers restart on the same
// directories:
//   - MUST_CACHE, one worker: the cache is the only copy; every
//     acknowledged file reads back byte for byte.
//   - ASYNC_THROUGH with replication.durable=2 on two workers, the UFS
//     unwritable (no file can be persisted before the crash): every
//     acknowledged file reads back, and once the UFS takes writes it is
//     persisted with the same bytes.
//
// The file in flight at the kill is never read back with wrong bytes.
// Rounds: ALCOVE_CRASH_ROUNDS (default 3); seed: ALCOVE_CRASH_SEED.
func TestWorkerCacheCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the alcove binary")
	}
	for _, tc := range []struct {
		wt      apiv1.WriteType
		durable int32
		nodes   []string
	}{
		{apiv1.WriteType_MUST_CACHE, 1, []string{"node-a"}},
		{apiv1.WriteType_ASYNC_THROUGH, 2, []string{"node-a", "node-b"}},
	} {
		t.Run(tc.wt.String(), func(t *testing.T) {
			runWorkerCrash(t, tc.wt, tc.durable, tc.nodes)
		})
	}
}

func runWorkerCrash(t *testing.T, wt apiv1.WriteType, durable int32, nodes []string) {
	fsys := crashfs.New(t, crashfs.Options{Model: crashfs.Strict})
	bin := alcoveBin(t)
	seed := crashfs.Seed(t)
	rounds := crashfs.Rounds(t, 3)
	rng := rand.New(rand.NewPCG(seed, 0))
	base, ports := t.TempDir(), freePorts(t, 2+3*len(nodes))
	ufs := filepath.Join(base, "ufs")
	if err := os.MkdirAll(ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	persists := wt == apiv1.WriteType_ASYNC_THROUGH
	if persists {
		immutable(t, ufs, true)
		t.Cleanup(func() { immutable(t, ufs, false) })
	}
	master := startCrashMaster(t, bin, filepath.Join(base, "master"), ufs, ports[:2])
	maddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	var args [][]string
	for i, n := range nodes {
		p := ports[2+3*i:]
		args = append(args, []string{"worker", "--master", maddr, "--dir", filepath.Join(base, n), "--node-name", n,
			"--host", "127.0.0.1", "--worker-port", strconv.Itoa(p[0]), "--worker-web-port", strconv.Itoa(p[1]),
			"--worker-data-port", strconv.Itoa(p[2]), "--mem-dir", filepath.Join(base, n, "mem"), "--mem-size", "4KB",
			"--mem-ramdisk=false", "--domain-socket", "none", "--tier", "SSD:" + fsys.Path(n) + ":1GB"})
	}
	acked := map[string][]byte{}
	var inFlight string
	var inFlightData []byte
	next := 0
	var workers []*crashfs.Process
	var cl *client.Client
	for round := 1; ; round++ {
		// A new client per round: this test is about what the caches kept,
		// not about reconnecting to restarted workers.
		var err error
		cl, err = client.New(client.Config{MasterAddresses: []string{maddr}, Node: "node-client", WriteType: wt,
			ReplicationDurable: durable, BlockSize: 1 << 20, RetryTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		workers = workers[:0]
		for _, a := range args {
			workers = append(workers, crashfs.Start(t, exec.Command(bin, a...)))
		}
		waitWorkersLive(t, cl, workers)
		logs := func() string { return workerLogs(workers, nodes) }
		for p, want := range acked {
			// Restarted workers report their restored blocks after they register.
			deadline := time.Now().Add(10 * time.Second)
			for cachedPercent(cl, p) != 100 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			got, err := readFile(cl, p)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d: acknowledged %s after the crash: %d of %d bytes, equal %v, err %v\n%s",
					round, p, len(got), len(want), bytes.Equal(got, want), err, logs())
			}
		}
		if inFlight != "" {
			// Not acknowledged: absent, unreadable or the written bytes, never others.
			if got, err := readFile(cl, inFlight); err == nil && !bytes.HasPrefix(inFlightData, got) {
				t.Fatalf("round %d: %s, in flight at the crash, reads %d bytes that were never written", round, inFlight, len(got))
			}
		}
		if round > rounds {
			break
		}
		target := 2 + rng.IntN(6)
		delay := time.Duration(rng.IntN(40)) * time.Millisecond
		var mu sync.Mutex
		var writeErr error
		var killed bool
		var once sync.Once
		done, reached := make(chan struct{}), make(chan struct{})
		stop := func() { once.Do(func() { close(reached) }) }
		go func() { // one writer: only the file in flight at the kill is unacknowledged
			defer close(done)
			for n := 0; ; {
				next++
				p, data := "/w/f"+strconv.Itoa(next), pseudoRandom(1<<20+rng.IntN(2<<20), byte(next))
				mu.Lock()
				inFlight, inFlightData = p, data
				mu.Unlock()
				err := writeWhole(cl, p, data)
				mu.Lock()
				if err != nil {
					if !killed {
						writeErr = err
						stop()
					}
					mu.Unlock()
					return
				}
				acked[p] = data
				inFlight = ""
				mu.Unlock()
				if n++; n == target {
					stop()
				}
			}
		}()
		<-reached
		time.Sleep(delay) // into the next write
		mu.Lock()
		killed = true
		mu.Unlock()
		rep, err := fsys.KillAndCrash(workers...)
		<-done
		if writeErr != nil {
			t.Fatalf("round %d: write before the kill: %v\n%s", round, writeErr, logs())
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed %v after %d acknowledged files (%v into the next write); %s", round, nodes, len(acked), delay, rep)
		if persists {
			for p := range acked {
				if st := stat(t, cl, p).GetPersistenceState(); st == apiv1.PersistenceState_PERSISTED {
					t.Fatalf("%s is %v although the UFS is unwritable: the test would prove nothing", p, st)
				}
			}
		}
	}
	if persists {
		immutable(t, ufs, false)
		for p, want := range acked {
			eventually(t, p+" persisted", 60*time.Second, func() bool {
				return stat(t, cl, p).GetPersistenceState() == apiv1.PersistenceState_PERSISTED
			})
			if got, err := os.ReadFile(filepath.Join(ufs, p)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("UFS copy of %s: %d of %d bytes, equal %v, err %v", p, len(got), len(want), bytes.Equal(got, want), err)
			}
		}
	}
	for _, w := range workers {
		if err := w.Stop(60 * time.Second); err != nil {
			t.Errorf("worker did not stop cleanly: %v", err)
		}
	}
	if err := master.p.Stop(20 * time.Second); err != nil {
		t.Errorf("master did not stop cleanly: %v", err)
	}
	t.Logf("%d acknowledged files; crashfs fsyncs: %v", len(acked), stateStats(fsys))
}

// writeWhole writes a whole file; nil means acknowledged.
func writeWhole(cl *client.Client, p string, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := cl.Create(ctx, p, client.WriteOptions{Recursive: true})
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// waitWorkersLive waits until every worker process logged its start and
// the master lists as many live workers.
func waitWorkersLive(t *testing.T, cl *client.Client, ws []*crashfs.Process) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		started := 0
		for _, w := range ws {
			select {
			case <-w.Exited():
				t.Fatalf("worker exited at start: %v\n%s", w.Err(), tail(w.Output(), 4000))
			default:
			}
			if strings.Contains(w.Output(), "worker started") {
				started++
			}
		}
		if started == len(ws) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			infos, err := cl.Workers(ctx)
			cancel()
			live := 0
			for _, info := range infos {
				if err == nil && info.GetState() == apiv1.WorkerState_WORKER_LIVE {
					live++
				}
			}
			if live == len(ws) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers not live within 30s", len(ws))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func workerLogs(ws []*crashfs.Process, nodes []string) string {
	var b strings.Builder
	for i, w := range ws {
		b.WriteString("worker " + nodes[i] + " output:\n" + tail(w.Output(), 3000) + "\n")
	}
	return b.String()
}

// cachedPercent is the file's in_alcove_percentage (-1 on error).
func cachedPercent(cl *client.Client, p string) int32 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fi, err := cl.GetStatus(ctx, p)
	if err != nil {
		return -1
	}
	return fi.GetInAlcovePercentage()
}
