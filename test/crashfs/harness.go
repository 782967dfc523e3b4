package crashfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alcove-io/alcove/test/prereq"
)

// Require skips the test when crashfs cannot mount here (not root, no
// /dev/fuse); under CI=true it fails instead.
func Require(t testing.TB) {
	t.Helper()
	prereq.Root(t)
	prereq.DevFuse(t)
}

// New mounts a crash filesystem for a test (backing directory and mount
// point under t.TempDir()) and unmounts it when the test ends.
func New(t testing.TB, opts Options) *FS {
	t.Helper()
	Require(t)
	root := t.TempDir()
	backing, mnt := filepath.Join(root, "backing"), filepath.Join(root, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(backing, mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// CopyOut copies the file at path (in the mount) to a temporary file and
// returns the copy's path. Open databases that mmap their file (bbolt) on
// the copy: a page fault on the mount from the test process, which serves
// the mount, can deadlock the Go runtime; read syscalls are safe.
func CopyOut(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("copy %s out of crashfs: %v", path, err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Seed returns the seed of a randomized crash test, $ALCOVE_CRASH_SEED if
// set, and logs it so that a failing run can be replayed.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ALCOVE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ALCOVE_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("crash test seed %d (replay with ALCOVE_CRASH_SEED=%d)", seed, seed)
	return seed
}

// Rounds returns how many crash rounds to run: $ALCOVE_CRASH_ROUNDS if set
// (make test-crash sets it), else def.
func Rounds(t testing.TB, def int) int {
	t.Helper()
	s := os.Getenv("ALCOVE_CRASH_ROUNDS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("ALCOVE_CRASH_ROUNDS=%q: want a positive number", s)
	}
	return n
}

// Process is a subprocess that keeps state on a crash filesystem. Run any
// daemon this way, with its state directory under FS.Path, then
// FS.KillAndCrash(p) to kill -9 it and crash the filesystem under it.
type Process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has been reaped
	err  error         // its exit status, set before done closes
}

// Start starts cmd. Its stdout and stderr, where the caller left them nil,
// are kept for Output. The process is killed when the test ends.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.out
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.Kill9() })
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Err returns the exit status once Exited is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Output returns what the process wrote to the captured stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// Kill9 sends SIGKILL and returns once the process is reaped: it holds no
// file open on the mount any more.
func (p *Process) Kill9() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill -9 %d: %w", p.Pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("process %d still running 30s after SIGKILL (stuck in the kernel?)", p.Pid())
	}
}

// Stop asks the process to exit (SIGTERM) and waits up to timeout, then
// kills it; it returns the exit status.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.Kill9()
		return fmt.Errorf("process %d did not exit within %v of SIGTERM", p.Pid(), timeout)
	}
}

// KillAndCrash kills every process with SIGKILL, waits for them, and
// crashes the filesystem: what they wrote without fsync is gone.
func (f *FS) KillAndCrash(ps ...*Process) (*CrashReport, error) {
	for _, p := range ps {
		if err := p.Kill9(); err != nil {
			return nil, err
		}
	}
	return f.Crash()
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutines and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
