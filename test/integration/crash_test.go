package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/test/crashfs"
)

// crashClients is how many clients load the master concurrently (raft
// batches their entries, as in production).
const crashClients = 4

// TestMasterCrashConsistency runs a real `alcove master` with its journal
// and metadata store on crashfs (Strict model: only directory fsyncs make
// names durable), kills it with SIGKILL at a random point while clients
// create, complete, rename, delete and checkpoint, crashes the filesystem
// (everything not fsynced is gone), and restarts it on the same directory:
// every acknowledged operation must be there, and nothing else but the
// operations in flight at the kill. Rounds: ALCOVE_CRASH_ROUNDS (default
// 4); seed: ALCOVE_CRASH_SEED.
func TestMasterCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the alcove binary")
	}
	fsys := crashfs.New(t, crashfs.Options{Model: crashfs.Strict})
	bin := alcoveBin(t)
	seed := crashfs.Seed(t)
	rounds := crashfs.Rounds(t, 4)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir, ufs, ports := fsys.Path("master"), t.TempDir(), freePorts(t, 2)

	clients := make([]*crashClient, crashClients)
	for i := range clients {
		clients[i] = &crashClient{dir: "/c" + strconv.Itoa(i), files: map[string]crashEntry{}, rng: rand.New(rand.NewPCG(seed, uint64(i)+1))}
	}
	m := startCrashMaster(t, bin, dir, ufs, ports)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	for _, c := range clients {
		if _, err := m.fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: c.dir, WriteType: apiv1.WriteType_MUST_CACHE}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	var total int64
	for round := 1; round <= rounds; round++ {
		// No checkpoint before the first kill: a snapshot's directory fsync
		// would make the earlier creation of the state files durable too
		// (the namespace is one ordered log) and hide a missing fsync of
		// the state directories.
		clients[0].checkpoints = round > 1
		target := int64(30 + rng.IntN(400))
		start := time.Now()
		acked, err := runUntilKilled(m, fsys, clients, target)
		rate := float64(acked) / time.Since(start).Seconds()
		if err != nil {
			t.Fatalf("round %d: %v\nmaster output:\n%s", round, err, tail(m.p.Output(), 4000))
		}
		total += acked
		applied, last := journalIndexes(t, dir)
		t.Logf("round %d: killed after %d acknowledged ops (%.0f/s); %s; store applied index %d, raft log ends at %d", round, acked, rate, m.crash, applied, last)
		if applied > last {
			t.Fatalf("round %d: the store applied journal index %d but the raft log ends at %d: the log lost entries the store has", round, applied, last)
		}
		m = startCrashMaster(t, bin, dir, ufs, ports)
		verifyCrashClients(t, m, clients)
	}
	if err := m.p.Stop(20 * time.Second); err != nil {
		t.Errorf("master did not stop cleanly: %v\n%s", err, tail(m.p.Output(), 4000))
	}
	t.Logf("%d rounds, %d acknowledged ops, crashfs stats of the state files: %v", rounds, total, stateStats(fsys))
}

type crashMaster struct {
	p     *crashfs.Process
	fs    apiv1.FileSystemMasterClient
	meta  apiv1.MetaMasterClient
	crash *crashfs.CrashReport
}

// startCrashMaster starts `alcove master` and waits until it answers.
func startCrashMaster(t *testing.T, bin, dir, ufs string, ports []int) *crashMaster {
	t.Helper()
	cmd := exec.Command(bin, "master", "--dir", dir, "--root-ufs", ufs, "--host", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--web-port", strconv.Itoa(ports[1]))
	p := crashfs.Start(t, cmd)
	cc, err := grpc.NewClient("passthrough:///127.0.0.1:"+strconv.Itoa(ports[0]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	m := &crashMaster{p: p, fs: apiv1.NewFileSystemMasterClient(cc), meta: apiv1.NewMetaMasterClient(cc)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := m.fs.ListStatus(ctx, &apiv1.ListStatusRequest{Path: "/"})
		cancel()
		if err == nil {
			return m
		}
		select {
		case <-p.Exited():
			t.Fatalf("master exited at start: %v\n%s", p.Err(), tail(p.Output(), 4000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("master did not answer within 30s: %v\n%s", err, tail(p.Output(), 4000))
		}
	}
}

// runUntilKilled loads the master until target operations are
// acknowledged, then kills it with SIGKILL and crashes the filesystem.
func runUntilKilled(m *crashMaster, fsys *crashfs.FS, clients []*crashClient, target int64) (int64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acked atomic.Int64
	var killed atomic.Bool
	reached := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(reached) }) }
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := c.step(ctx, m)
				if err != nil && !killed.Load() {
					errs[i] = fmt.Errorf("client %s: %w", c.dir, err)
					stop()
				}
				if err != nil {
					return // in flight at the kill: c.pending says what
				}
				if acked.Add(1) >= target {
					stop()
				}
			}
		}()
	}
	select {
	case <-reached:
	case <-time.After(2 * time.Minute):
		errs = append(errs, fmt.Errorf("only %d of %d operations acknowledged in 2 minutes", acked.Load(), target))
	}
	killed.Store(true)
	rep, err := fsys.KillAndCrash(m.p)
	cancel()
	wg.Wait()
	m.crash = rep
	return acked.Load(), errors.Join(append(errs, err)...)
}

// crashEntry is what the master reports for one name.
type crashEntry struct {
	id        int64 // -1: unknown (created by the operation in flight)
	folder    bool
	completed bool
	length    int64
}

// crashClient owns directory dir. files is the acknowledged state;
// pending, the operation whose answer the kill cut off.
type crashClient struct {
	dir         string
	files       map[string]crashEntry
	pending     *crashOp
	next        int
	rng         *rand.Rand
	checkpoints bool
}

type crashOp struct {
	desc  string
	apply func(files map[string]crashEntry) // the change, once acknowledged or found applied
}

// step sends one operation and, when acknowledged, applies it to files.
func (c *crashClient) step(ctx context.Context, m *crashMaster) error {
	names := namesWhere(c.files, func(e crashEntry) bool { return !e.folder })
	incomplete := namesWhere(c.files, func(e crashEntry) bool { return !e.folder && !e.completed })
	fresh := func(prefix string) string {
		c.next++
		return prefix + strconv.Itoa(c.next)
	}
	path := func(name string) string { return c.dir + "/" + name }
	var op crashOp
	var call func(context.Context) error
	switch r := c.rng.IntN(100); {
	case c.checkpoints && r < 3:
		op = crashOp{desc: "checkpoint", apply: func(map[string]crashEntry) {}}
		call = func(ctx context.Context) error {
			_, err := m.meta.Checkpoint(ctx, &apiv1.CheckpointRequest{})
			return err
		}
	case r < 35 || len(names) == 0:
		name, id := fresh("f"), int64(-1)
		op = crashOp{desc: "create " + name, apply: func(f map[string]crashEntry) { f[name] = crashEntry{id: id} }}
		call = func(ctx context.Context) error {
			res, err := m.fs.CreateFile(ctx, &apiv1.CreateFileRequest{Path: path(name), WriteType: apiv1.WriteType_MUST_CACHE})
			if err == nil {
				id = res.GetFileInfo().GetFileId()
			}
			return err
		}
	case r < 55 && len(incomplete) > 0:
		name := incomplete[c.rng.IntN(len(incomplete))]
		e, length := c.files[name], c.rng.Int64N(1<<30)
		op = crashOp{desc: "complete " + name, apply: func(f map[string]crashEntry) {
			f[name] = crashEntry{id: e.id, completed: true, length: length}
		}}
		call = func(ctx context.Context) error {
			_, err := m.fs.CompleteFile(ctx, &apiv1.CompleteFileRequest{Path: path(name), FileId: e.id, Length: length})
			return err
		}
	case r < 75:
		src := names[c.rng.IntN(len(names))]
		dst, overwrite := fresh("f"), false
		if other := names[c.rng.IntN(len(names))]; other != src && c.rng.IntN(3) == 0 {
			dst, overwrite = other, true
		}
		op = crashOp{desc: "rename " + src + " to " + dst, apply: func(f map[string]crashEntry) {
			f[dst] = f[src]
			delete(f, src)
		}}
		call = func(ctx context.Context) error {
			_, err := m.fs.Rename(ctx, &apiv1.RenameRequest{Src: path(src), Dst: path(dst), Overwrite: overwrite})
			return err
		}
	case r < 90:
		name := names[c.rng.IntN(len(names))]
		op = crashOp{desc: "delete " + name, apply: func(f map[string]crashEntry) { delete(f, name) }}
		call = func(ctx context.Context) error {
			_, err := m.fs.Delete(ctx, &apiv1.DeleteRequest{Path: path(name)})
			return err
		}
	default:
		name, id := fresh("d"), int64(-1)
		op = crashOp{desc: "mkdir " + name, apply: func(f map[string]crashEntry) { f[name] = crashEntry{id: id, folder: true} }}
		call = func(ctx context.Context) error {
			res, err := m.fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: path(name), WriteType: apiv1.WriteType_MUST_CACHE})
			if err == nil {
				id = res.GetFileInfo().GetFileId()
			}
			return err
		}
	}
	c.pending = &op
	if err := call(ctx); err != nil {
		return fmt.Errorf("%s: %w", op.desc, err)
	}
	op.apply(c.files)
	c.pending = nil
	return nil
}

func namesWhere(files map[string]crashEntry, keep func(crashEntry) bool) []string {
	var out []string
	for n, e := range files {
		if keep(e) {
			out = append(out, n)
		}
	}
	sort.Strings(out) // map order must not change what the seed replays
	return out
}

// verifyCrashClients checks every client's directory after a restart: it
// must hold the acknowledged state, with or without the operation in
// flight at the kill, and the root only the clients' directories.
func verifyCrashClients(t *testing.T, m *crashMaster, clients []*crashClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := m.fs.ListStatus(ctx, &apiv1.ListStatusRequest{Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(root.GetFileInfos()); n != len(clients) {
		t.Fatalf("root holds %d entries after the restart, want the %d client directories", n, len(clients))
	}
	for _, c := range clients {
		res, err := m.fs.ListStatus(ctx, &apiv1.ListStatusRequest{Path: c.dir})
		if err != nil {
			t.Fatalf("list %s after the restart: %v", c.dir, err)
		}
		got := map[string]crashEntry{}
		for _, fi := range res.GetFileInfos() {
			e := crashEntry{id: fi.GetFileId(), folder: fi.GetFolder()}
			if !e.folder {
				e.completed, e.length = fi.GetCompleted(), fi.GetLength()
			}
			got[fi.GetName()] = e
		}
		candidates := []map[string]crashEntry{c.files}
		if c.pending != nil {
			after := maps.Clone(c.files)
			c.pending.apply(after)
			candidates = append(candidates, after)
		}
		ok := false
		for _, want := range candidates {
			ok = ok || sameEntries(got, want)
		}
		if !ok {
			pending := "none"
			if c.pending != nil {
				pending = c.pending.desc
			}
			t.Fatalf("%s after the restart:\n got          %v\n acknowledged %v\n in flight: %s", c.dir, got, c.files, pending)
		}
		c.files, c.pending = got, nil
	}
}

func sameEntries(got, want map[string]crashEntry) bool {
	if len(got) != len(want) {
		return false
	}
	for n, w := range want {
		g, ok := got[n]
		if !ok || (w.id != -1 && g.id != w.id) || g.folder != w.folder || g.completed != w.completed || g.length != w.length {
			return false
		}
	}
	return true
}

// journalIndexes reads, with the master dead, the store's applied index
// and the raft log's last index (raft-boltdb keeps entries in bucket
// "logs", keyed by big-endian index). A missing file counts as 0.
func journalIndexes(t *testing.T, dir string) (applied, last uint64) {
	t.Helper()
	read := func(path string, fn func(tx *bbolt.Tx) uint64) uint64 {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return 0
		}
		db, err := bbolt.Open(crashfs.CopyOut(t, path), 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("open %s after the crash: %v", path, err)
		}
		defer db.Close()
		var v uint64
		_ = db.View(func(tx *bbolt.Tx) error { v = fn(tx); return nil })
		return v
	}
	applied = read(filepath.Join(dir, "metadata.db"), func(tx *bbolt.Tx) uint64 {
		if b := tx.Bucket(journal.MetaBucket); b != nil {
			return journal.U64(b.Get(journal.AppliedIndexKey))
		}
		return 0
	})
	last = read(filepath.Join(dir, "journal", "raft.db"), func(tx *bbolt.Tx) uint64 {
		if b := tx.Bucket([]byte("logs")); b != nil {
			k, _ := b.Cursor().Last()
			return journal.U64(k)
		}
		return 0
	})
	return applied, last
}

// stateStats summarizes the fsyncs crashfs saw: per file, except that
// raft snapshots and a worker's cache files (numeric names) are summed per
// directory.
func stateStats(fsys *crashfs.FS) string {
	sums := map[string]crashfs.FileStats{}
	for name, s := range fsys.Stats() {
		dir, base := filepath.Split(name)
		if _, err := strconv.ParseInt(base, 10, 64); err == nil {
			name = dir + "<cache files>"
		} else if i := strings.Index(name, "snapshots/"); i >= 0 {
			name = name[:i] + "snapshots/<files>"
		}
		sum := sums[name]
		sum.Fsyncs += s.Fsyncs
		sum.Fdatasyncs += s.Fdatasyncs
		sums[name] = sum
	}
	var out []string
	for name, s := range sums {
		if s.Fsyncs+s.Fdatasyncs > 0 {
			out = append(out, fmt.Sprintf("%s: %d fsync, %d fdatasync", name, s.Fsyncs, s.Fdatasyncs))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
