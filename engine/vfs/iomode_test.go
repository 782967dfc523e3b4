package vfs

import (
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitFor waits (bounded) until ok() holds for n, woken by n's state
// changes.
func waitFor(t *testing.T, n *Node, what string, ok func() bool) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	tm := time.AfterFunc(10*time.Second, func() { n.mu.Lock(); n.cond.Broadcast(); n.mu.Unlock() })
	defer tm.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		n.cond.Wait()
	}
}

type openResult struct {
	fl *file
	e  syscall.Errno
}

func (f *tfs) openAsync(p string, flags int) <-chan openResult {
	ch := make(chan openResult, 1)
	go func() {
		fl, e := f.open(p, flags, 0)
		ch <- openResult{fl, e}
	}()
	return ch
}

// TestOpenWaitsForRelease: while the FUSE layer still runs a RELEASE of a
// node (go-fuse drops the passthrough backing id after the handle's
// Release), an open of it waits for the RELEASE to end, not for a clock.
func TestOpenWaitsForRelease(t *testing.T) {
	f := newTFS(t, nil)
	f.mustWrite("/r", randData(1, 3<<20), 0o644)
	n, _ := f.walk("/r")
	end := n.BeginRelease()
	res := f.openAsync("/r", os.O_RDONLY)
	waitFor(t, n, "the open to wait", func() bool { return n.waiting > 0 })
	select {
	case r := <-res:
		t.Fatalf("open finished (%v) while a release of the file was running", r.e)
	default:
	}
	end()
	r := <-res
	if r.e != 0 {
		t.Fatal(r.e)
	}
	if _, ok := r.fl.h.PassthroughFd(); !ok {
		t.Fatal("not passthrough")
	}
	r.fl.close()
}

// TestWriterWaitsForReaderRelease: a writer that finds a passthrough
// reader open waits for its RELEASE (the kernel sends it after close(2),
// in the background) and then opens, instead of failing with ETXTBSY.
func TestWriterWaitsForReaderRelease(t *testing.T) {
	f := newTFS(t, nil)
	data := randData(2, 2<<20)
	f.mustWrite("/w", data, 0o644)
	n, _ := f.walk("/w")
	r, e := f.open("/w", os.O_RDONLY, 0)
	if e != 0 {
		t.Fatal(e)
	}
	if _, ok := r.h.PassthroughFd(); !ok {
		t.Fatal("not passthrough")
	}
	res := f.openAsync("/w", os.O_WRONLY)
	waitFor(t, n, "the writer to wait", func() bool { return n.waiting > 0 })
	if e := r.close(); e != 0 {
		t.Fatal(e)
	}
	w := <-res
	if w.e != 0 {
		t.Fatalf("writer after the reader's release: %v", w.e)
	}
	if e := w.fl.writeAt([]byte("X"), 0); e != 0 {
		t.Fatal(e)
	}
	if e := w.fl.close(); e != 0 {
		t.Fatal(e)
	}
	data[0] = 'X'
	mustEqual(t, "after write", f.mustRead("/w"), data)
}

// TestConcurrentReleasesCommit: writers of one file release at the same
// time without a flush (as when the kernel sends RELEASE for each);
// exactly one of them holds the last stage reference and commits every
// write. Before, two could each see the other's reference, neither
// commit, and the stage be dropped with the data.
func TestConcurrentReleasesCommit(t *testing.T) {
	f := newTFS(t, nil)
	const writers = 4
	for round := range 60 {
		f.mustWrite("/c", make([]byte, writers), 0o644)
		var hs []*Handle
		for i := range writers {
			w, e := f.open("/c", os.O_WRONLY, 0)
			if e != 0 {
				t.Fatal(e)
			}
			if e := w.writeAt([]byte{byte('a' + i)}, int64(i)); e != 0 {
				t.Fatal(e)
			}
			hs = append(hs, w.h)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if e := h.Release(f.ctx); e != 0 {
					t.Errorf("release: %v", e)
				}
			}()
		}
		close(start)
		wg.Wait()
		if got := f.mustRead("/c"); string(got) != "abcd" {
			t.Fatalf("round %d: committed %q, want every write (\"abcd\")", round, got)
		}
	}
}
