package master_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// gatedUFS is the local UFS with a gate in front of object creation: the
// test writes ASYNC_THROUGH files (no UFS write of their own), so only the
// worker's persists create objects, and they block until the gate opens,
// which holds them in flight while the test deletes or renames their files.
type gatedUFS struct {
	ufs.Local
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func (g *gatedUFS) Create(ctx context.Context, p string, mode uint32) (ufs.Writer, error) {
	g.mu.Lock()
	g.waiting++
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Local.Create(ctx, p, mode)
}

func (g *gatedUFS) waitingPersists() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

var gate = &gatedUFS{open: make(chan struct{})}

func init() {
	ufs.Register("gated", func(*url.URL, map[string]string) (ufs.UFS, error) { return gate, nil })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ufsEntries lists what the UFS directory holds, temporaries included.
func ufsEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPersistNeverResurrects holds background persists in flight while
// their files are deleted, renamed, or their directory removed: a deleted
// file must not come back (in the UFS, or in the namespace after a UFS
// sync), and a renamed file must be persisted at its new name.
func TestPersistNeverResurrects(t *testing.T) {
	ufsDir := t.TempDir()
	c := alcovetest.StartWith(t, alcovetest.Options{RootUFS: "gated://" + ufsDir}, "node-a")
	cl := c.Client("node-a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const size = 3<<20 + 17 // several 1 MiB blocks
	files := []string{"/d/deleted", "/d/renamed", "/gone/inner", "/d/kept"}
	for _, f := range files {
		c.WriteType("node-a", f, size, apiv1.WriteType_ASYNC_THROUGH)
	}
	// The worker runs two persists at a time: two are held at the gate,
	// the others are queued behind them (their commands are issued).
	waitFor(t, "the worker to start persisting", func() bool { return gate.waitingPersists() >= 2 })

	if err := cl.Delete(ctx, "/d/deleted", false, false); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rename(ctx, "/d/renamed", "/d/moved", false); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, "/gone", true, false); err != nil {
		t.Fatal(err)
	}
	close(gate.open)

	waitFor(t, "the surviving files to be persisted", func() bool {
		for _, p := range []string{"/d/moved", "/d/kept"} {
			info, err := cl.GetStatus(ctx, p)
			if err != nil || info.GetPersistenceState() != apiv1.PersistenceState_PERSISTED {
				return false
			}
		}
		return true
	})
	// The persists of the removed files were answered too: no temporary
	// object is left behind.
	waitFor(t, "the UFS to hold exactly the surviving files", func() bool {
		got := strings.Join(ufsEntries(t, ufsDir), " ")
		return got == "d d/kept d/moved"
	})
	for _, p := range []string{"d/moved", "d/kept"} {
		fi, err := os.Stat(filepath.Join(ufsDir, p))
		if err != nil || fi.Size() != size {
			t.Fatalf("UFS copy of %s: %v, size %v; want %d bytes", p, err, fi, size)
		}
	}
	// A full UFS sync brings nothing back.
	infos, err := cl.ListStatus(ctx, "/", true, true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.GetPath())
	}
	if got := strings.Join(names, " "); got != "/d /d/kept /d/moved" {
		t.Fatalf("namespace after a UFS sync: %s; want /d /d/kept /d/moved", got)
	}
	for _, p := range []string{"/d/deleted", "/d/renamed", "/gone"} {
		if _, err := cl.GetStatus(ctx, p); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("stat %s after its delete or rename: %v, want not found", p, err)
		}
	}
	r, err := cl.OpenFile(ctx, "/d/moved", apiv1.ReadType_NO_CACHE)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := io.Copy(io.Discard, r); err != nil || n != size {
		t.Fatalf("read renamed file: %d bytes, %v", n, err)
	}
}
