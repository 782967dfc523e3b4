package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// kill -9 of the worker that took an ASYNC_THROUGH write, before the file
// could be persisted (the UFS refuses writes): with replication.durable=2
// nothing acknowledged is lost and the file is persisted once the UFS
// takes writes again; with durable=1 the same kill loses the file, and a
// read says so (LOST) instead of returning wrong bytes.
func TestWorkerKill9KeepsDurableCopies(t *testing.T) {
	for _, tc := range []struct {
		durable int32
		lost    bool
	}{{2, false}, {1, true}} {
		t.Run("durable="+strconv.Itoa(int(tc.durable)), func(t *testing.T) {
			c := startProcs(t, "node-a", "node-b")
			immutable(t, c.ufs, true)
			t.Cleanup(func() { immutable(t, c.ufs, false) })
			data := pseudoRandom(3<<20+12345, byte(tc.durable))
			writer := c.client("node-a", apiv1.WriteType_ASYNC_THROUGH, tc.durable)
			writeFile(t, writer, "/d/f", data)

			reader := c.client("node-c", 0, 0)
			fi := stat(t, reader, "/d/f")
			for _, b := range fi.GetFileBlockInfos() {
				if got := len(b.GetBlockInfo().GetLocations()); got != int(tc.durable) {
					t.Fatalf("acknowledged write has copies %s, want %d per block", locationsPerBlock(fi), tc.durable)
				}
			}
			if fi.GetPersistenceState() == apiv1.PersistenceState_PERSISTED {
				t.Fatal("persisted although the UFS is unwritable: the test would prove nothing")
			}

			c.workers["node-a"].kill9()
			c.waitWorker(c.workers["node-a"], apiv1.WorkerState_WORKER_LOST)
			got, err := readFile(reader, "/d/f")
			if tc.lost {
				if !errors.Is(err, meta.ErrDataLost) {
					t.Fatalf("durable=1 after losing the only copy: read %d bytes, err %v; want a LOST error", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("durable=2 after kill -9 of the writer: read %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
			}
			immutable(t, c.ufs, false)
			eventually(t, "the file persisted from the surviving copy", 60*time.Second, func() bool {
				return stat(t, reader, "/d/f").GetPersistenceState() == apiv1.PersistenceState_PERSISTED
			})
			onDisk, err := os.ReadFile(filepath.Join(c.ufs, "d", "f"))
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("UFS copy: %d bytes, equal %v, err %v", len(onDisk), bytes.Equal(onDisk, data), err)
			}
		})
	}
}

// A restarted worker (kill -9, or SIGTERM as a rolling update does) serves
// its cached blocks again without reading the UFS, and MUST_CACHE files
// (no UFS copy at all) survive the restart.
func TestWorkerRestartKeepsCache(t *testing.T) {
	for _, how := range []string{"kill-9", "sigterm"} {
		t.Run(how, func(t *testing.T) {
			c := startProcs(t, "node-a")
			w := c.workers["node-a"]
			files := map[string][]byte{
				"/must-cache":    pseudoRandom(2<<20+7, 1),
				"/cache-through": pseudoRandom(3<<20, 2),
			}
			writeFile(t, c.client("node-a", apiv1.WriteType_MUST_CACHE, 0), "/must-cache", files["/must-cache"])
			writeFile(t, c.client("node-a", apiv1.WriteType_CACHE_THROUGH, 0), "/cache-through", files["/cache-through"])
			if how == "kill-9" {
				w.kill9()
			} else {
				w.term()
			}
			w.start()
			c.waitStarted(w)
			// A reader on the node (domain socket) and one elsewhere (data port).
			for _, node := range []string{"node-a", "node-c"} {
				cl := c.client(node, 0, 0)
				for p, want := range files {
					eventually(t, p+" cached again", 10*time.Second, func() bool {
						return stat(t, cl, p).GetInAlcovePercentage() == 100
					})
					got, err := readFile(cl, p)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("%s from %s after the restart: %d bytes, equal %v, err %v\nworker log:\n%s", p, node, len(got), bytes.Equal(got, want), err, tail(w.log.String(), 5000))
					}
				}
			}
			if ufs := w.metric(t, "alcove_worker_bytes_read_ufs_total"); ufs != 0 {
				t.Fatalf("the restarted worker read %v bytes from the UFS; want its cache served", ufs)
			}
			if hits := w.metric(t, "alcove_worker_cache_hits_total"); hits == 0 {
				t.Fatal("no cache hits on the restarted worker")
			}
		})
	}
}

// While a node's only worker restarts (SIGTERM, as a rolling update does),
// I/O waits for it instead of failing: a read of a MUST_CACHE file (its
// only copy is in that worker's cache) and a new write both started while
// no worker runs, and both complete with the right bytes once it is back.
func TestWorkerRestartDelaysIO(t *testing.T) {
	c := startProcs(t, "node-a")
	w := c.workers["node-a"]
	before := pseudoRandom(2<<20+3, 5)
	writeFile(t, c.client("node-a", apiv1.WriteType_MUST_CACHE, 0), "/before", before)
	w.term()
	during := pseudoRandom(1<<20+11, 6)
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 2)
	reader, writer := c.client("node-a", 0, 0), c.client("node-a", apiv1.WriteType_MUST_CACHE, 0)
	go func() {
		got, err := readFile(reader, "/before")
		if err == nil && !bytes.Equal(got, before) {
			err = fmt.Errorf("read %d bytes, not the ones written", len(got))
		}
		results <- result{"read /before", err}
	}()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := writeWith(ctx, writer, "/during", during)
		results <- result{"write /during", err}
	}()
	// Both calls run while no worker does: the master even declares it lost.
	c.waitWorker(w, apiv1.WorkerState_WORKER_LOST)
	select {
	case r := <-results:
		t.Fatalf("%s ended while no worker ran: %v", r.what, r.err)
	default:
	}
	w.start()
	c.waitStarted(w)
	for range 2 {
		if r := <-results; r.err != nil {
			t.Fatalf("%s across the worker restart: %v\nworker log:\n%s", r.what, r.err, tail(w.log.String(), 3000))
		}
	}
	if got, err := readFile(reader, "/during"); err != nil || !bytes.Equal(got, during) {
		t.Fatalf("/during after the restart: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, during), err)
	}
}

// A reformatted master (`alcove format`: a new namespace, new cluster id)
// makes a restarted worker drop its old cache: file ids start over, so the
// old blocks would be another file's bytes.
func TestReformattedMasterDropsWorkerCache(t *testing.T) {
	c := startProcs(t, "node-a")
	w := c.workers["node-a"]
	old := pseudoRandom(2<<20, 3)
	oldInfo := writeFile(t, c.client("node-a", apiv1.WriteType_MUST_CACHE, 0), "/x", old)
	w.kill9()
	c.master.term()
	if out, err := osexec.Command(alcoveBin(t), "format", "--dir", c.base).CombinedOutput(); err != nil {
		t.Fatalf("alcove format: %v\n%s", err, out)
	}
	c.master.start()
	w.start()
	info := c.waitStarted(w)
	if info.GetBlockCount() != 0 {
		t.Fatalf("worker kept %d blocks of the old namespace", info.GetBlockCount())
	}
	fresh := pseudoRandom(2<<20, 4)
	newInfo := writeFile(t, c.client("node-c", apiv1.WriteType_CACHE_THROUGH, 0), "/y", fresh)
	if newInfo.GetFileId() != oldInfo.GetFileId() {
		t.Logf("file ids differ (%d vs %d): the check below still holds", newInfo.GetFileId(), oldInfo.GetFileId())
	}
	got, err := readFile(c.client("node-a", 0, 0), "/y")
	if err != nil || !bytes.Equal(got, fresh) {
		t.Fatalf("new file after the reformat: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, fresh), err)
	}
	if log := w.log.String(); !strings.Contains(log, "recorded for another cluster") {
		t.Fatalf("worker did not report dropping its cache:\n%s", tail(log, 3000))
	}
}

// A reader whose worker goes silent (SIGSTOP: connections stay open, nothing
// answers) finishes from another copy, or from the UFS through another
// worker, within 10 s.
func TestSilentWorkerDoesNotHangReaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		wt   apiv1.WriteType
	}{
		{"another copy", apiv1.WriteType_ASYNC_THROUGH},
		{"the UFS", apiv1.WriteType_CACHE_THROUGH},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startProcs(t, "node-a", "node-b")
			data := pseudoRandom(4<<20, 5)
			writeFile(t, c.client("node-a", tc.wt, 2), "/s", data)
			reader := c.client("node-c", 0, 0)
			if got, err := readFile(reader, "/s"); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("first read: %d bytes, err %v", len(got), err)
			}
			first := stat(t, reader, "/s").GetFileBlockInfos()[0].GetBlockInfo().GetLocations()[0].GetNode()
			if tc.wt == apiv1.WriteType_CACHE_THROUGH && first != "node-a" {
				t.Fatalf("CACHE_THROUGH block on %s, want node-a", first)
			}
			w := c.workers[first]
			w.signal(syscall.SIGSTOP, 0)
			defer w.signal(syscall.SIGCONT, 0)
			start := time.Now()
			got, err := readFile(reader, "/s")
			took := time.Since(start)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read with %s stopped: %d bytes, equal %v, err %v", first, len(got), bytes.Equal(got, data), err)
			}
			if took > 10*time.Second {
				t.Fatalf("read with %s stopped took %v, want < 10 s", first, took)
			}
			t.Logf("read of %d bytes with the serving worker stopped took %v", len(got), took.Round(time.Millisecond))
		})
	}
}

// SIGTERM drains a worker: a write in flight finishes (and is kept across
// the restart), a new write is refused before any data and lands on another
// worker, and the worker then exits on its own.
func TestWorkerSigtermDrains(t *testing.T) {
	c := startProcs(t, "node-a", "node-b")
	a := c.workers["node-a"]
	cl := c.client("node-a", apiv1.WriteType_MUST_CACHE, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := pseudoRandom(3<<20, 6)
	w, err := cl.Create(ctx, "/inflight", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	a.signal(syscall.SIGTERM, 0)
	a.waitLog("draining")

	during := writeFile(t, cl, "/during-drain", pseudoRandom(1<<20, 7))
	for _, b := range stat(t, cl, "/during-drain").GetFileBlockInfos() {
		for _, l := range b.GetBlockInfo().GetLocations() {
			if l.GetNode() != "node-b" {
				t.Fatalf("a write started while node-a drains landed on %s (file %d)", l.GetNode(), during.GetFileId())
			}
		}
	}

	if _, err := w.Write(data[1<<20:]); err != nil {
		t.Fatalf("write in flight during the drain: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close of the write in flight during the drain: %v", err)
	}
	a.wait(40 * time.Second)
	if log := a.log.String(); !strings.Contains(log, "drained") {
		t.Fatalf("worker exited without draining:\n%s", tail(log, 3000))
	}
	a.start()
	c.waitStarted(a)
	got, err := readFile(c.client("node-c", 0, 0), "/inflight")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the write finished during the drain: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, data), err)
	}
}
