package shortcircuit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/engine/meta"
)

// fileHandler serves blocks from real files in a directory: block id N is
// the file "N", whole. It counts live leases.
type fileHandler struct {
	dir      string
	leases   atomic.Int64
	promoted atomic.Int64
}

func (h *fileHandler) OpenLocal(blockID, _ int64, promote bool, _ []byte) (*os.File, int64, int64, string, func(), error) {
	f, err := os.Open(filepath.Join(h.dir, fmt.Sprint(blockID)))
	if err != nil {
		return nil, 0, 0, "", nil, fmt.Errorf("block %d: %w", blockID, meta.ErrNotFound)
	}
	fi, _ := f.Stat()
	if promote {
		h.promoted.Add(1)
	}
	h.leases.Add(1)
	var once sync.Once
	return f, 3, fi.Size() - 3, "MEM", func() { once.Do(func() { h.leases.Add(-1) }) }, nil
}

func start(t *testing.T) (*fileHandler, string) {
	t.Helper()
	return startWith(t, Options{})
}

func startWith(t *testing.T, opts Options) (*fileHandler, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "worker.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	h := &fileHandler{dir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h, sock
}

func waitLeases(t *testing.T, h *fileHandler, want int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); h.leases.Load() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("leases = %d, want %d", h.leases.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenPassesFdAndLease(t *testing.T) {
	h, sock := start(t)
	content := []byte("xxxhello, short circuit")
	os.WriteFile(filepath.Join(h.dir, "17"), content, 0o644)
	ctx := context.Background()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := c.Open(ctx, 17, 64, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, b.Length)
	if _, err := b.File.ReadAt(got, b.Offset); err != nil || !bytes.Equal(got, content[3:]) || b.Tier != "MEM" {
		t.Fatalf("read %q (err %v, tier %s)", got, err, b.Tier)
	}
	if h.leases.Load() != 1 || h.promoted.Load() != 1 {
		t.Fatalf("leases %d promoted %d", h.leases.Load(), h.promoted.Load())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitLeases(t, h, 0)

	if _, err := c.Open(ctx, 99, 64, false, nil); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("open of an uncached block: %v, want ErrNotFound", err)
	}
	// The connection is still usable after an error.
	b, err = c.Open(ctx, 17, 64, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.File.Close()
	c.Close() // connection end releases the lease
	waitLeases(t, h, 0)
	if _, err := c.Open(ctx, 17, 64, false, nil); err == nil {
		t.Fatal("open on a closed client succeeded")
	}
}

func TestConcurrentClients(t *testing.T) {
	h, sock := start(t)
	for i := 0; i < 4; i++ {
		os.WriteFile(filepath.Join(h.dir, fmt.Sprint(i)), bytes.Repeat([]byte{byte(i)}, 1000+i), 0o644)
	}
	ctx := context.Background()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				id := int64((g + i) % 4)
				b, err := c.Open(ctx, id, 0, false, nil)
				if err != nil {
					errs <- err
					return
				}
				buf := make([]byte, b.Length)
				b.File.ReadAt(buf, b.Offset)
				if b.Length != int64(997+id) || !bytes.Equal(buf, bytes.Repeat([]byte{byte(id)}, len(buf))) {
					errs <- fmt.Errorf("block %d: wrong bytes", id)
				}
				b.Close()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitLeases(t, h, 0)
}

func TestCanceledContext(t *testing.T) {
	_, sock := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if _, err := c.Open(ctx, 1, 0, false, nil); err == nil {
		t.Fatal("open with a canceled context succeeded")
	}
	if _, err := Dial(context.Background(), filepath.Join(t.TempDir(), "absent.sock")); !errors.Is(err, meta.ErrUnavailable) {
		t.Fatalf("dial absent socket: %v, want ErrUnavailable", err)
	}
}

// TestLeaseLimitAndPeerCheck: a connection holds at most MaxLeases blocks
// open, and a peer refused by Allow (checked with SO_PEERCRED) is hung up on.
func TestLeaseLimitAndPeerCheck(t *testing.T) {
	h, sock := startWith(t, Options{MaxLeases: 2})
	os.WriteFile(filepath.Join(h.dir, "5"), []byte("xxxdata"), 0o644)
	ctx := context.Background()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b1, err := c.Open(ctx, 5, 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, 5, 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, 5, 0, false, nil); !errors.Is(err, meta.ErrNoSpace) {
		t.Fatalf("third lease: %v, want ResourceExhausted", err)
	}
	b1.Close()
	if b, err := c.Open(ctx, 5, 0, false, nil); err != nil {
		t.Fatalf("after a close: %v", err)
	} else {
		b.Close()
	}

	var seen atomic.Int64
	_, refusing := startWith(t, Options{Allow: func(cr *unix.Ucred) error {
		seen.Store(int64(cr.Pid))
		return errors.New("not this one")
	}})
	rc, err := Dial(ctx, refusing)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Open(ctx, 5, 0, false, nil); err == nil {
		t.Fatal("a refused peer opened a block")
	}
	if seen.Load() != int64(os.Getpid()) {
		t.Fatalf("SO_PEERCRED pid %d, want this process %d", seen.Load(), os.Getpid())
	}
}
