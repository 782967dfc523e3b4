package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type statJSON struct {
	Path             string `json:"path"`
	Length           int64  `json:"length"`
	BlockSizeBytes   int64  `json:"blockSizeBytes"`
	Persisted        bool   `json:"persisted"`
	PersistenceState string `json:"persistenceState"`
	InAlcove         int    `json:"inAlcovePercentage"`
	Blocks           []struct {
		ID        int64 `json:"id"`
		Length    int64 `json:"length"`
		Locations []struct {
			WorkerID int64  `json:"workerId"`
			Node     string `json:"node"`
			Tier     string `json:"tier"`
		} `json:"locations"`
	} `json:"blocks"`
}

func (c *cluster) stat(path string) statJSON {
	c.t.Helper()
	var s statJSON
	if err := json.Unmarshal([]byte(c.mustRun("fs", "stat", "-o", "json", path)), &s); err != nil {
		c.t.Fatalf("stat -o json %s: %v", path, err)
	}
	return s
}

// catSum streams `alcove fs cat` into sha256 without buffering the file.
func (c *cluster) catSum(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "--master", c.master, "fs", "cat", path)
	cmd.Env = append(os.Environ(), "ALCOVE_NODE="+c.node, "ALCOVE_CONF_DIR="+c.dir, "ALCOVE_TLS_DIR="+c.tlsDir())
	h := sha256.New()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = h, &stderr
	if err := cmd.Run(); err != nil {
		return "", &cmdError{err: err, stderr: stderr.String()}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

func randomFile(t *testing.T, size int64, seed uint64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Acceptance 2 and 3: a 300 MiB CACHE_THROUGH file, its 5 MEM blocks on the
// local node, capacity used, then kill -9 and a restart on the same dir.
func TestCacheThroughRoundTripAndKill9(t *testing.T) {
	c := newCluster(t)
	src, want := randomFile(t, 300<<20, 1)
	c.mustRun("fs", "copyFromLocal", "--write-type", "CACHE_THROUGH", src, "/data/big")

	got, err := c.catSum("/data/big")
	if err != nil || got != want {
		t.Fatalf("cat sha256 = %s, %v; want %s", got, err, want)
	}
	if ufs := fileSum(t, filepath.Join(c.dir, "ufs", "data", "big")); ufs != want {
		t.Fatalf("UFS copy sha256 = %s, want %s (CACHE_THROUGH writes the UFS synchronously)", ufs, want)
	}
	s := c.stat("/data/big")
	if s.Length != 300<<20 || len(s.Blocks) != 5 || !s.Persisted {
		t.Fatalf("stat: length %d, %d blocks, persisted %v; want 300 MiB, 5 blocks, persisted", s.Length, len(s.Blocks), s.Persisted)
	}
	for _, b := range s.Blocks {
		if len(b.Locations) != 1 || b.Locations[0].Node != c.node || b.Locations[0].Tier != "MEM" {
			t.Fatalf("block %d locations %+v; want one on node %s tier MEM", b.ID, b.Locations, c.node)
		}
	}
	capOut := c.mustRun("fsadmin", "report", "capacity")
	if !strings.Contains(capOut, "Tier: MEM") || strings.Contains(capOut, "Used Capacity: 0.00B") {
		t.Fatalf("capacity report does not show MEM used:\n%s", capOut)
	}

	c.kill9()
	c.start()
	s2 := c.stat("/data/big")
	if s2.Length != s.Length || len(s2.Blocks) != 5 {
		t.Fatalf("after kill -9: stat %+v", s2)
	}
	got, err = c.catSum("/data/big")
	if err != nil || got != want {
		t.Fatalf("after kill -9: cat sha256 = %s, %v; want %s", got, err, want)
	}
}

// Acceptance 4: MUST_CACHE data evicted by a full tier is reported LOST and
// reading it fails loudly.
func TestMustCacheEvictedIsLost(t *testing.T) {
	c := newCluster(t, "--mem-size", "32MB")
	a, _ := randomFile(t, 24<<20, 2)
	b, wantB := randomFile(t, 24<<20, 3)
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", "--block-size", "4MB", a, "/a")
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", "--block-size", "4MB", b, "/b")

	deadline := time.Now().Add(15 * time.Second)
	for c.stat("/a").PersistenceState != "LOST" {
		if time.Now().After(deadline) {
			t.Fatalf("/a never reported LOST after its blocks were evicted: %+v", c.stat("/a"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err := c.catSum("/a")
	if err == nil || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("cat of evicted MUST_CACHE file: err = %v; want an error saying the data is lost", err)
	}
	if got, err := c.catSum("/b"); err != nil || got != wantB {
		t.Fatalf("cat /b = %s, %v; want %s", got, err, wantB)
	}
}

// The default write type persists in the background.
func TestAsyncThroughPersists(t *testing.T) {
	c := newCluster(t)
	src, want := randomFile(t, 5<<20, 4)
	c.mustRun("fs", "copyFromLocal", src, "/async")
	deadline := time.Now().Add(20 * time.Second)
	for !c.stat("/async").Persisted {
		if time.Now().After(deadline) {
			t.Fatalf("ASYNC_THROUGH file not persisted within 20s: %+v", c.stat("/async"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := fileSum(t, filepath.Join(c.dir, "ufs", "async")); got != want {
		t.Fatalf("persisted UFS copy sha256 = %s, want %s", got, want)
	}
}

// fs persist writes MUST_CACHE files (one-block and multi-block) to the UFS
// and returns once the master records them PERSISTED; a free afterwards
// is allowed and the data reads back from the UFS.
func TestFsPersist(t *testing.T) {
	c := newCluster(t)
	src, want := randomFile(t, 9<<20, 5)
	c.mustRun("fs", "mkdir", "/p")
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", src, "/p/one")
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", "--block-size", "4MB", src, "/p/three")
	if _, err := c.run("fs", "free", "/p/one"); err == nil {
		t.Fatal("free of a MUST_CACHE file before persist succeeded")
	}
	if out := c.mustRun("fs", "persist", "--timeout", "60s", "/p"); !strings.Contains(out, "/p persisted") {
		t.Fatalf("fs persist: %q", out)
	}
	for _, name := range []string{"one", "three"} {
		if st := c.stat("/p/" + name); st.PersistenceState != "PERSISTED" {
			t.Fatalf("/p/%s after fs persist: %+v", name, st)
		}
		if got := fileSum(t, filepath.Join(c.dir, "ufs", "p", name)); got != want {
			t.Fatalf("UFS copy of /p/%s: sha256 %s, want %s", name, got, want)
		}
	}
	c.mustRun("fs", "free", "/p")
	if got, err := c.catSum("/p/three"); err != nil || got != want {
		t.Fatalf("cat after free: %s, %v", got, err)
	}
	if _, err := c.run("fs", "persist", "/p/missing"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("persist of a missing path: %v", err)
	}
}

// Acceptance 5: bad input gives a one-line error naming the problem and a
// non-zero exit, and the daemon keeps running.
func TestBadInput(t *testing.T) {
	c := newCluster(t)
	c.mustRun("fs", "mkdir", "/dir")
	free := freePorts(t, 1)[0]
	// How long a call retries unreachable masters (default 15 s) is a property.
	quick := filepath.Join(t.TempDir(), "alcove-site.properties")
	if err := os.WriteFile(quick, []byte("alluxio.user.rpc.retry.max.duration=1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"nonexistent path", []string{"fs", "stat", "/nope"}, "/nope", 1},
		{"cat nonexistent", []string{"fs", "cat", "/dir/missing"}, "does not exist", 1},
		{"dotdot escape", []string{"fs", "ls", "/../etc"}, "escapes the root", 1},
		{"relative path", []string{"fs", "stat", "etc"}, "not absolute", 1},
		{"directory as file", []string{"fs", "cat", "/dir"}, "is a directory", 1},
		{"copyToLocal a missing file", []string{"fs", "copyToLocal", "/nope", t.TempDir()}, "/nope", 1},
		{"rm non-empty dir", []string{"fs", "rm", "/"}, "root", 1},
		{"bad write type", []string{"fs", "copyFromLocal", "--write-type", "FAST", "/etc/hostname", "/x"}, "unknown write type", 2},
		{"missing args", []string{"fs", "mv", "/a"}, "expects SRC and DST", 2},
		{"unreachable master", []string{"--conf", quick, "--master", "127.0.0.1:" + strconv.Itoa(free), "fs", "ls", "/"}, "cannot reach the master", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, err := c.run(tc.args...)
			if err == nil {
				t.Fatalf("alcove %v succeeded: %s", tc.args, out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("exit = %v, want code %d", err, tc.code)
			}
			msg := strings.TrimSpace(out)
			if strings.Count(msg, "\n") > 0 || !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr %q: want one line containing %q", msg, tc.want)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	if !c.alive() {
		t.Fatal("alcove local died on bad input")
	}
	c.mustRun("fs", "ls", "/")
}
