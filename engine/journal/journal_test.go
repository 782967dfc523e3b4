package journal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

var kvBucket = []byte("kv")

// kvApply is a tiny state machine: create_inode{name} counts how often a name
// was applied (so double-applies show), "fail-*" names fail before mutating
// and "partial-*" names fail after mutating (the write must be rolled back).
func kvApply(tx *bbolt.Tx, e *apiv1.JournalEntry) (any, error) {
	c := e.GetCreateInode()
	if c == nil {
		return nil, fmt.Errorf("%w: unexpected entry", meta.ErrInvalidArgument)
	}
	name := c.GetInode().GetName()
	if strings.HasPrefix(name, "fail") {
		return nil, fmt.Errorf("%w: %s", meta.ErrAlreadyExists, name)
	}
	b, err := tx.CreateBucketIfNotExists(kvBucket)
	if err != nil {
		return nil, err
	}
	n := U64(b.Get([]byte(name))) + 1
	if err := b.Put([]byte(name), PutU64(n)); err != nil {
		return nil, err
	}
	if err := b.Put([]byte("time:"+name), PutU64(uint64(e.GetTimeMs()))); err != nil {
		return nil, err
	}
	if strings.HasPrefix(name, "partial") {
		return nil, fmt.Errorf("%w: %s", meta.ErrFailedPrecondition, name)
	}
	return n, nil
}

func entry(name string) *apiv1.JournalEntry {
	return &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_CreateInode{CreateInode: &apiv1.CreateInodeEntry{Inode: &apiv1.Inode{Name: name}}}}
}

type node struct {
	j  *Journal
	sm *BoltFSM
}

func openNode(t testing.TB, dir string) *node {
	t.Helper()
	sm, err := OpenBolt(filepath.Join(dir, "metadata.db"), kvApply)
	if err != nil {
		t.Fatal(err)
	}
	j, err := Open(Config{Dir: dir, SnapshotThreshold: 1 << 20}, sm)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := j.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return &node{j: j, sm: sm}
}

func (n *node) close(t testing.TB) {
	t.Helper()
	if err := n.j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.j.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := n.sm.Close(); err != nil {
		t.Fatal(err)
	}
}

func (n *node) count(t testing.TB, name string) uint64 {
	t.Helper()
	var v uint64
	err := n.sm.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(kvBucket); b != nil {
			v = U64(b.Get([]byte(name)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestApplyRestartNoDoubleApply(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := openNode(t, dir)
	for i := range 20 {
		v, err := n.j.Apply(ctx, entry(fmt.Sprintf("k%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if v.(uint64) != 1 {
			t.Fatalf("k%d applied %d times", i, v)
		}
	}
	// Failing entries return their error and leave no trace.
	if _, err := n.j.Apply(ctx, entry("fail-1")); !errors.Is(err, meta.ErrAlreadyExists) {
		t.Fatalf("fail-1: got %v", err)
	}
	if _, err := n.j.Apply(ctx, entry("partial-1")); !errors.Is(err, meta.ErrFailedPrecondition) {
		t.Fatalf("partial-1: got %v", err)
	}
	if got := n.count(t, "partial-1"); got != 0 {
		t.Fatalf("partial-1 mutation survived its failure: %d", got)
	}
	// Concurrent applies get batched into shared transactions; a failure in a
	// batch must not affect its neighbours.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%d", i)
			if i%10 == 0 {
				name = fmt.Sprintf("partial-c%d", i)
			}
			_, err := n.j.Apply(ctx, entry(name))
			if (err != nil) != strings.HasPrefix(name, "partial") {
				errs <- fmt.Errorf("%s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	applied := n.sm.AppliedIndex()
	if applied == 0 || applied > n.j.LastIndex() {
		t.Fatalf("applied index %d, last index %d", applied, n.j.LastIndex())
	}
	n.close(t)

	n = openNode(t, dir)
	defer n.close(t)
	for i := range 20 {
		if got := n.count(t, fmt.Sprintf("k%d", i)); got != 1 {
			t.Fatalf("after restart k%d count %d, want 1", i, got)
		}
	}
	for i := range 100 {
		name := fmt.Sprintf("c%d", i)
		want := uint64(1)
		if i%10 == 0 {
			name, want = fmt.Sprintf("partial-c%d", i), 0
		}
		if got := n.count(t, name); got != want {
			t.Fatalf("after restart %s count %d, want %d", name, got, want)
		}
	}
	if n.sm.AppliedIndex() < applied {
		t.Fatalf("applied index went back from %d to %d", applied, n.sm.AppliedIndex())
	}
	if v, err := n.j.Apply(ctx, entry("k0")); err != nil || v.(uint64) != 2 {
		t.Fatalf("apply after restart: %v %v", v, err)
	}
}

func TestLeaderStampsTime(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	before := time.Now().UnixMilli()
	e := entry("timed")
	if _, err := n.j.Apply(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if e.TimeMs < before || e.TimeMs > time.Now().UnixMilli() {
		t.Fatalf("time_ms %d not stamped", e.TimeMs)
	}
	if got := n.count(t, "time:timed"); got != uint64(e.TimeMs) {
		t.Fatalf("state machine saw time %d, want %d", got, e.TimeMs)
	}
}

func TestCheckpointAndRestore(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := openNode(t, dir)
	for i := range 10 {
		if _, err := n.j.Apply(ctx, entry(fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := n.j.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx < n.sm.AppliedIndex() {
		t.Fatalf("checkpoint index %d below applied %d", idx, n.sm.AppliedIndex())
	}
	if again, err := n.j.Checkpoint(ctx); err != nil || again != idx {
		t.Fatalf("second checkpoint: %d %v (first %d)", again, err, idx)
	}
	for i := range 5 {
		if _, err := n.j.Apply(ctx, entry(fmt.Sprintf("after%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Snapshot + Restore on the state machine directly: state goes back.
	snap, err := n.sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "snap"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	n.close(t)

	// Lose the metadata store entirely: the checkpoint plus the log rebuild it.
	if err := os.Remove(filepath.Join(dir, "metadata.db")); err != nil {
		t.Fatal(err)
	}
	n = openNode(t, dir)
	for i := range 10 {
		if got := n.count(t, fmt.Sprintf("s%d", i)); got != 1 {
			t.Fatalf("s%d count %d after rebuild from snapshot", i, got)
		}
	}
	for i := range 5 {
		if got := n.count(t, fmt.Sprintf("after%d", i)); got != 1 {
			t.Fatalf("after%d count %d after rebuild from log", i, got)
		}
	}
	// Restore replaces the state with the snapshot taken above.
	if _, err := n.j.Apply(ctx, entry("later")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	restored := false
	n.sm.OnRestore(func() { restored = true })
	if err := n.sm.Restore(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !restored || n.count(t, "later") != 0 || n.count(t, "after4") != 1 {
		t.Fatalf("restore: hook %v later=%d after4=%d", restored, n.count(t, "later"), n.count(t, "after4"))
	}
	n.close(t)
}

const crashEnv = "ALCOVE_JOURNAL_CRASH_DIR"

// TestCrashChild is the process killed by TestKill9KeepsAcknowledged.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run as a subprocess")
	}
	n := openNode(t, dir)
	for i := 0; ; i++ {
		name := fmt.Sprintf("ack%d", i)
		if _, err := n.j.Apply(context.Background(), entry(name)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %s\n", name)
	}
}

func TestKill9KeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 300 {
		if name, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked = append(acked, name)
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acknowledged only %d entries", len(acked))
	}
	n := openNode(t, dir)
	defer n.close(t)
	for _, name := range acked {
		if got := n.count(t, name); got != 1 {
			t.Fatalf("acknowledged %s has count %d after kill -9", name, got)
		}
	}
	// Entries are contiguous: nothing after a gap, nothing applied twice.
	last, _ := strconv.Atoi(strings.TrimPrefix(acked[len(acked)-1], "ack"))
	for i := last + 1; ; i++ {
		c := n.count(t, fmt.Sprintf("ack%d", i))
		if c == 0 {
			break
		}
		if c != 1 {
			t.Fatalf("ack%d count %d", i, c)
		}
	}
}

func TestStoreAheadOfJournalRefused(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir)
	for i := range 3 {
		if _, err := n.j.Apply(context.Background(), entry(fmt.Sprintf("x%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	n.close(t)
	if err := os.RemoveAll(filepath.Join(dir, "journal")); err != nil {
		t.Fatal(err)
	}
	sm, err := OpenBolt(filepath.Join(dir, "metadata.db"), kvApply)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	if _, err := Open(Config{Dir: dir}, sm); !errors.Is(err, meta.ErrFailedPrecondition) {
		t.Fatalf("open with a lost journal: %v", err)
	}
}

func TestTCPTransportSingleMember(t *testing.T) {
	dir := t.TempDir()
	sm, err := OpenBolt(filepath.Join(dir, "metadata.db"), kvApply)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	j, err := Open(Config{Dir: dir, ID: "m1", BindAddress: "127.0.0.1:0"}, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := j.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Apply(ctx, entry("tcp")); err != nil {
		t.Fatal(err)
	}
	if addr, id := j.Leader(); id != "m1" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("leader %q %q", addr, id)
	}
}
