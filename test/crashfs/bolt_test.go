package crashfs_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/test/crashfs"
)

const mmapChildEnv = "CRASHFS_MMAP_CHILD"

// TestMmapChild does the mapping for TestMmapSeesWrites. It must be another
// process: a thread of the serving process blocked in a page fault on the
// mount holds its Go P and stalls the runtime (GC stop-the-world) that the
// server needs to answer the fault.
func TestMmapChild(t *testing.T) {
	p := os.Getenv(mmapChildEnv)
	if p == "" {
		t.Skip("only run as a subprocess")
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 * 4096
	must(t, f.Truncate(size))
	ro, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		off  int64
		data []byte
	}{
		{0, bytes.Repeat([]byte{'p'}, 4096)},   // a whole page
		{4096 + 100, []byte("partial")},        // inside a page
		{3*4096 - 2, []byte("straddle")},       // across a page boundary
		{0, bytes.Repeat([]byte{'q'}, 2*4096)}, // overwrite mapped pages
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.data, w.off); err != nil {
			t.Fatal(err)
		}
		if got := ro[w.off : w.off+int64(len(w.data))]; !bytes.Equal(got, w.data) {
			t.Fatalf("mapping at %d after pwrite: %q, want %q", w.off, got[:min(len(got), 16)], w.data[:min(len(w.data), 16)])
		}
	}
	rw, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(rw[2*4096:], "through the mapping")
	must(t, unix.Msync(rw, unix.MS_SYNC))
	must(t, unix.Munmap(rw))
	must(t, unix.Munmap(ro))
}

// TestMmapSeesWrites checks what bbolt relies on: pwrite through the mount
// is visible at once through a shared read-only mapping, for whole and
// partial pages, and msync(MS_SYNC) of a shared writable mapping is durable.
func TestMmapSeesWrites(t *testing.T) {
	fsys := crashfs.New(t, crashfs.Options{})
	p := fsys.Path("db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapChild$", "-test.v")
	cmd.Env = append(os.Environ(), mmapChildEnv+"="+p)
	child := crashfs.Start(t, cmd)
	if err := child.Err(); err != nil {
		t.Fatalf("mapping checks: %v\n%s", err, child.Output())
	}
	if !strings.Contains(child.Output(), "--- PASS: TestMmapChild") {
		t.Fatalf("the mapping checks did not run:\n%s", child.Output())
	}
	if _, err := fsys.Crash(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got[2*4096:], []byte("through the mapping")) || got[0] != 'q' {
		t.Fatalf("after msync and crash: %q...", got[2*4096:2*4096+24])
	}
}

func TestStatsCountSyncs(t *testing.T) {
	fsys := crashfs.New(t, crashfs.Options{})
	must(t, os.Mkdir(fsys.Path("d"), 0o755))
	f := write(t, fsys.Path("d", "f"), "x", 0)
	must(t, f.Sync())
	must(t, f.Sync())
	must(t, unix.Fdatasync(int(f.Fd())))
	must(t, f.Close())
	fsyncPath(t, fsys.Path("d"))
	want := map[string]crashfs.FileStats{"d": {Fsyncs: 1}, "d/f": {Fsyncs: 2, Fdatasyncs: 1}}
	check := func(when string) {
		t.Helper()
		got := fsys.Stats()
		for name, w := range want {
			if got[name] != w {
				t.Errorf("%s: stats of %s = %+v, want %+v", when, name, got[name], w)
			}
		}
	}
	check("before the crash")
	if _, err := fsys.Crash(); err != nil {
		t.Fatal(err)
	}
	check("after the crash") // earlier boots count
}

const (
	boltChildEnv  = "CRASHFS_BOLT_CHILD"
	boltNoSyncEnv = "CRASHFS_BOLT_NOSYNC"
)

// TestBoltChild is the process TestBoltKill9 kills: it commits one key per
// bbolt transaction and prints "ACK n" once commit n returned.
func TestBoltChild(t *testing.T) {
	path := os.Getenv(boltChildEnv)
	if path == "" {
		t.Skip("only run as a subprocess")
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: os.Getenv(boltNoSyncEnv) == "1"})
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'v'}, 700)
	for i := uint64(0); ; i++ {
		err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("k"))
			if err != nil {
				return err
			}
			return b.Put(binary.BigEndian.AppendUint64(nil, i), val)
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %d\n", i)
	}
}

// TestBoltKill9 shows why crashfs exists: bbolt without fdatasync (NoSync)
// keeps every acknowledged commit across kill -9 alone, because the page
// cache survives the process; crashfs's crash loses them. With fdatasync,
// every acknowledged commit survives the crash.
func TestBoltKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	tests := []struct {
		name         string
		noSync       bool
		crash        bool
		wantAllAcked bool
	}{
		{"fdatasync, crash", false, true, true},
		{"NoSync, kill -9 only", true, false, true},
		{"NoSync, crash", true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := crashfs.New(t, crashfs.Options{})
			path := fsys.Path("bolt.db")
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBoltChild$")
			cmd.Env = append(os.Environ(), boltChildEnv+"="+path)
			if tc.noSync {
				cmd.Env = append(cmd.Env, boltNoSyncEnv+"=1")
			}
			cmd.Stdout = w
			p := crashfs.Start(t, cmd)
			w.Close()
			acked := readAcks(t, r, p, 300)
			if tc.crash {
				rep, err := fsys.KillAndCrash(p)
				if err != nil {
					t.Fatal(err)
				}
				t.Log(rep)
			} else if err := p.Kill9(); err != nil {
				t.Fatal(err)
			}
			missing := missingKeys(t, path, acked)
			switch {
			case tc.wantAllAcked && missing > 0:
				t.Fatalf("%d of %d acknowledged commits lost", missing, acked)
			case !tc.wantAllAcked && missing == 0:
				t.Fatalf("all %d acknowledged commits survived; the crash should have lost the unsynced ones", acked)
			}
			t.Logf("%d acknowledged, %d lost", acked, missing)
		})
	}
}

// readAcks reads "ACK n" lines until n reaches want-1; it returns how many
// commits were acknowledged (the process keeps committing meanwhile).
func readAcks(t *testing.T, r *os.File, p *crashfs.Process, want uint64) uint64 {
	t.Helper()
	must(t, r.SetReadDeadline(time.Now().Add(60*time.Second)))
	sc := bufio.NewScanner(r)
	var n uint64
	for n < want && sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			i, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			n = i + 1
		}
	}
	if n < want {
		_ = p.Kill9()
		t.Fatalf("child acknowledged %d commits (%v):\n%s", n, sc.Err(), p.Output())
	}
	return n
}

// missingKeys counts the acknowledged keys the database lacks; a database
// that does not open at all lacks them all.
func missingKeys(t *testing.T, path string, acked uint64) uint64 {
	t.Helper()
	db, err := bbolt.Open(crashfs.CopyOut(t, path), 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Logf("open after the crash: %v", err)
		return acked
	}
	defer db.Close()
	var missing uint64
	must(t, db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("k"))
		for i := uint64(0); i < acked; i++ {
			if b == nil || b.Get(binary.BigEndian.AppendUint64(nil, i)) == nil {
				missing++
			}
		}
		return nil
	}))
	return missing
}
