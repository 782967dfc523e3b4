package vfs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestNewFileRoundTrips: a file this VFS creates is made once in the
// master and completed once by its first commit — no empty completion at
// create, no temporary sibling, no rename — in every way it can be
// written and closed.
func TestNewFileRoundTrips(t *testing.T) {
	f := newTFS(t, nil)
	other := newTFSOn(t, f)
	data := randData(1, 100<<10)
	big := randData(3, 3<<20+12345) // several blocks (the test client's are 1 MiB)
	for _, tc := range []struct {
		name string
		// do writes /dir/<name> (or leaves it elsewhere) and returns the
		// path that must hold want afterwards.
		do   func(t *testing.T, p string) string
		want []byte
		// master calls beyond one CreateFile and one CompleteFile: a
		// rename the test made, a second commit (a temporary sibling
		// renamed over the file, as for any existing file).
		extraRenames, extraCommits uint64
		// extraCreates: temporary siblings renamed over the still
		// incomplete new file (which is then never completed itself).
		extraCreates uint64
	}{
		{name: "write and close", want: data, do: func(t *testing.T, p string) string {
			f.mustWrite(p, data, 0o644)
			return p
		}},
		{name: "several blocks, streamed", want: big, do: func(t *testing.T, p string) string {
			f.mustWrite(p, big, 0o644)
			return p
		}},
		{name: "written out of order", want: big, do: func(t *testing.T, p string) string {
			fl, e := f.open(p, os.O_WRONLY|os.O_CREATE, 0o644)
			checkErrno(t, "create", e, 0)
			// In order first (a stream starts), then a write before the
			// end: the stage is committed instead of the stream.
			checkErrno(t, "write", fl.writeAt(big[:2<<20], 0), 0)
			checkErrno(t, "write", fl.writeAt(big[2<<20:], 2<<20), 0)
			checkErrno(t, "write", fl.writeAt(big[:4096], 0), 0)
			checkErrno(t, "close", fl.close(), 0)
			return p
		}},
		{name: "touch", want: nil, do: func(t *testing.T, p string) string {
			fl, e := f.open(p, os.O_WRONLY|os.O_CREATE, 0o644)
			checkErrno(t, "create", e, 0)
			checkErrno(t, "close", fl.close(), 0)
			return p
		}},
		{name: "fsync then more writes", extraCommits: 1, extraRenames: 1, want: append(append([]byte{}, data...), data...), do: func(t *testing.T, p string) string {
			fl, e := f.open(p, os.O_RDWR|os.O_CREATE, 0o644)
			checkErrno(t, "create", e, 0)
			checkErrno(t, "write", fl.writeAt(data, 0), 0)
			checkErrno(t, "fsync", fl.h.Fsync(f.ctx), 0)
			// Durable and visible at fsync.
			mustEqual(t, "other mount after fsync", other.mustRead(p), data)
			checkErrno(t, "write", fl.writeAt(data, int64(len(data))), 0)
			checkErrno(t, "close", fl.close(), 0)
			return p
		}},
		// Moved while open: the create's write token binds the old UFS
		// location, so the commit goes through a temporary sibling.
		{name: "renamed while open", want: data, extraCreates: 1, extraRenames: 2, do: func(t *testing.T, p string) string {
			fl, e := f.open(p, os.O_WRONLY|os.O_CREATE, 0o644)
			checkErrno(t, "create", e, 0)
			checkErrno(t, "write", fl.writeAt(data, 0), 0)
			d, name, _ := f.parent(p)
			checkErrno(t, "rename", f.v.Rename(f.ctx, f.who, d, name, d, name+".moved", 0), 0)
			checkErrno(t, "close", fl.close(), 0)
			if _, e := f.stat(p); e != syscall.ENOENT {
				t.Fatalf("old name after rename: %v", e)
			}
			return p + ".moved"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := "/" + tc.name
			before := f.cl.MasterCalls()
			got := tc.do(t, p)
			calls := alcovetest.CallsSince(f.cl.MasterCalls(), before)
			if n := 1 + tc.extraCommits; calls["CreateFile"] != n+tc.extraCreates || calls["CompleteFile"] != n || calls["Rename"] != tc.extraRenames {
				t.Fatalf("master calls %v: want %d CreateFile, %d CompleteFile, %d Rename", calls, n+tc.extraCreates, n, tc.extraRenames)
			}
			// Complete and readable through this VFS and another one.
			mustEqual(t, "read back", f.mustRead(got), tc.want)
			mustEqual(t, "other mount", other.mustRead(got), tc.want)
			info, err := f.c.GetStatus(f.ctx, got)
			if err != nil || !info.GetCompleted() || info.GetLength() != int64(len(tc.want)) {
				t.Fatalf("status %v: %v", info, err)
			}
		})
	}
}

// TestNewFileOpenElsewhere: until its first commit a new file is
// incomplete, and another mount's open says so (EBUSY) instead of
// showing it empty; the writer's own VFS reads what was written.
func TestNewFileOpenElsewhere(t *testing.T) {
	f := newTFS(t, nil)
	other := newTFSOn(t, f)
	data := randData(2, 4096)
	fl, e := f.open("/w", os.O_RDWR|os.O_CREATE, 0o644)
	checkErrno(t, "create", e, 0)
	checkErrno(t, "write", fl.writeAt(data, 0), 0)
	_, e = other.open("/w", os.O_RDONLY, 0)
	checkErrno(t, "open on another mount while written", e, syscall.EBUSY)
	mustEqual(t, "same mount while written", f.mustRead("/w"), data)
	checkErrno(t, "close", fl.close(), 0)
	mustEqual(t, "other mount after close", other.mustRead("/w"), data)
}

// TestListingAnswersLookups: lookups right after Readdir come from the
// listing (no GetStatus), once per name; a change made through the VFS
// since the listing was taken sends them to the master again.
func TestListingAnswersLookups(t *testing.T) {
	f := newTFS(t, nil)
	for i := range 3 {
		f.put(fmt.Sprintf("/d/f%d", i), []byte("old"))
	}
	d, e := f.walk("/d")
	checkErrno(t, "walk", e, 0)
	lookup := func(name string) (Attr, map[string]uint64) {
		before := f.cl.MasterCalls()
		var a Attr
		_, e := f.v.Lookup(f.ctx, f.who, d, name, &a)
		checkErrno(t, "lookup "+name, e, 0)
		return a, alcovetest.CallsSince(f.cl.MasterCalls(), before)
	}
	_, e = f.v.Readdir(f.ctx, f.who, d)
	checkErrno(t, "readdir", e, 0)
	if a, calls := lookup("f0"); calls["GetStatus"] != 0 || a.Size != 3 {
		t.Fatalf("lookup after readdir: size %d, calls %v; want it from the listing", a.Size, calls)
	}
	if _, calls := lookup("f0"); calls["GetStatus"] != 1 {
		t.Fatalf("second lookup of a listed name: calls %v; want a GetStatus", calls)
	}
	// A commit through the VFS after the listing: f1's listed size is stale.
	_, e = f.v.Readdir(f.ctx, f.who, d)
	checkErrno(t, "readdir", e, 0)
	f.mustWrite("/d/f2", []byte("longer"), 0o644)
	if a, calls := lookup("f1"); calls["GetStatus"] != 1 || a.Size != 3 {
		t.Fatalf("lookup after a change: size %d, calls %v; want a GetStatus", a.Size, calls)
	}
	if a, _ := lookup("f2"); a.Size != 6 {
		t.Fatalf("f2 after its rewrite: size %d, want 6", a.Size)
	}
}

// TestNewFileTokenExpired: a new file first written after the create's
// write token expired (held open longer than a token lives) is still
// committed — through a temporary sibling renamed over it, as an existing
// file is — and keeps the owner and mode it was created with.
func TestNewFileTokenExpired(t *testing.T) {
	const lifetime = 2 * time.Second
	f := newTFSWith(t, alcovetest.Options{TokenLifetime: lifetime}, nil)
	other := newTFSOn(t, f)
	data := randData(4, 3<<20+7)
	fl, e := f.open("/late", os.O_WRONLY|os.O_CREATE, 0o640)
	checkErrno(t, "create", e, 0)
	created := time.Now()
	// The token of the create expires lifetime after it was signed.
	time.Sleep(time.Until(created.Add(lifetime + 500*time.Millisecond)))
	checkErrno(t, "write", fl.writeAt(data, 0), 0)
	checkErrno(t, "close", fl.close(), 0)
	mustEqual(t, "other mount", other.mustRead("/late"), data)
	info, err := f.c.GetStatus(f.ctx, "/late")
	if err != nil || !info.GetCompleted() || info.GetMode()&0o777 != 0o640 {
		t.Fatalf("status %v: %v", info, err)
	}
}

// TestNewFileRemovedElsewhere: a new file removed through another client
// while this VFS still writes it: close succeeds and the data goes with
// the file (as for any file removed behind the mount's back), whether the
// writes were streamed (in order) or staged only (out of order).
func TestNewFileRemovedElsewhere(t *testing.T) {
	f := newTFS(t, nil)
	data := randData(5, 3<<20+99)
	for _, tc := range []struct {
		name    string
		inOrder bool
	}{{"streamed", true}, {"staged", false}} {
		t.Run(tc.name, func(t *testing.T) {
			p := "/gone-" + tc.name
			fl, e := f.open(p, os.O_WRONLY|os.O_CREATE, 0o644)
			checkErrno(t, "create", e, 0)
			if !tc.inOrder {
				checkErrno(t, "write", fl.writeAt(data[:4096], 1<<20), 0)
			}
			checkErrno(t, "write", fl.writeAt(data, 0), 0)
			if err := f.c.Delete(f.ctx, p, false, false); err != nil {
				t.Fatal(err)
			}
			checkErrno(t, "close", fl.close(), 0)
			if _, err := f.c.GetStatus(f.ctx, p); !errors.Is(err, meta.ErrNotFound) {
				t.Fatalf("after close: %v, want not found", err)
			}
		})
	}
}
