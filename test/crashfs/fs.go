package crashfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Model says which fsync makes a namespace operation durable.
type Model int

const (
	// Ordered (the default): an operation becomes durable when its parent
	// directory is fsynced, or when a file or directory it created, renamed,
	// linked, unlinked or chmod-ed is fsynced afterwards: what ext4
	// (data=ordered), XFS and btrfs guarantee for a file's own name.
	Ordered Model = iota
	// Strict (POSIX): only an fsync of the parent directory makes an
	// entry change durable; fsync of a file makes its data durable, never
	// its name.
	Strict
)

func (m Model) String() string {
	if m == Strict {
		return "strict"
	}
	return "ordered"
}

// Options configure a mount.
type Options struct {
	Model Model
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
}

// FileStats are the counters of one name in the mount.
type FileStats struct {
	Fsyncs     uint64 // fsync requests (FUSE_FSYNC, or FUSE_FSYNCDIR on a directory)
	Fdatasyncs uint64 // fdatasync requests
	Unsynced   int64  // bytes a crash would drop now: dirty pages plus the size change
}

// CrashReport says what a crash dropped.
type CrashReport struct {
	Files   map[string]int64 // name → unsynced bytes dropped
	MetaOps []string         // namespace operations dropped, oldest first
}

func (r *CrashReport) String() string {
	var total int64
	names := make([]string, 0, len(r.Files))
	for n, b := range r.Files {
		total += b
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = fmt.Sprintf("%s (%d B)", n, r.Files[n])
	}
	return fmt.Sprintf("dropped %d unsynced bytes in %d files [%s] and %d namespace ops",
		total, len(r.Files), strings.Join(names, ", "), len(r.MetaOps))
}

// FS is a mounted crash-test filesystem.
type FS struct {
	backing, mountpoint string
	opts                Options

	mu      sync.Mutex
	server  *fuse.Server
	st      *state
	crashes int
	past    map[string]FileStats // counters of earlier boots
}

// Mount mounts a crash filesystem at mountpoint over backing, which holds
// its durable state (and may already hold files: they are durable). It
// needs root and /dev/fuse.
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	var err error
	if backing, err = filepath.Abs(backing); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", backing, err)
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", mountpoint, err)
	}
	f := &FS{backing: backing, mountpoint: mountpoint, opts: opts, past: map[string]FileStats{}}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	st := newState(f.backing, f.opts.Model)
	sec := time.Second
	var loadErr error
	srv, err := fs.Mount(f.mountpoint, st.root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // mount(2) as root, no fusermount
			FsName:            "crashfs",
			Name:              "crashfs",
			Debug:             f.opts.Debug,
		},
		EntryTimeout:   &sec,
		AttrTimeout:    &sec,
		RootStableAttr: &fs.StableAttr{Ino: rootIno},
		OnAdd:          func(ctx context.Context) { loadErr = st.load(ctx) },
	})
	if err != nil {
		st.close()
		return fmt.Errorf("mount crashfs at %s: %w", f.mountpoint, err)
	}
	if loadErr != nil {
		_ = srv.Unmount()
		st.close()
		return fmt.Errorf("load crashfs state from %s: %w", f.backing, loadErr)
	}
	f.server, f.st = srv, st
	return nil
}

// Path returns the path of elem inside the mount.
func (f *FS) Path(elem ...string) string {
	return filepath.Join(append([]string{f.mountpoint}, elem...)...)
}

// Backing returns the backing directory (the durable state; do not change
// it while mounted).
func (f *FS) Backing() string { return f.backing }

// Crash simulates a power loss and reboot: every write and namespace
// operation not made durable by an fsync is dropped, and the filesystem is
// mounted again from its durable state (the kernel's page cache of the old
// mount goes with it). Every process using the mount must be dead (kill -9
// it and wait for it) before: a process with an open file fails the crash.
func (f *FS) Crash() (*CrashReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		return nil, errors.New("crash: crashfs is not mounted")
	}
	rep := f.st.dropReport()
	if err := f.unmountLocked(); err != nil {
		return nil, fmt.Errorf("crash: %w", err)
	}
	f.crashes++
	if err := f.mount(); err != nil {
		return nil, fmt.Errorf("crash: remount: %w", err)
	}
	return rep, nil
}

// Crashes returns how many times Crash ran.
func (f *FS) Crashes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashes
}

// Unmount unmounts the filesystem; like Crash, it drops what was not
// synced (the backing directory keeps the durable state). It is idempotent.
func (f *FS) Unmount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		return nil
	}
	err := f.unmountLocked()
	if err != nil {
		// A process (maybe this one) still uses the mount. Abort the
		// connection so that it gets errors instead of hanging: an
		// in-process client closing a file at exit would otherwise wait
		// for a FLUSH that the exiting server never answers.
		if aerr := f.abortLocked(); aerr != nil {
			err = errors.Join(err, aerr)
		}
		f.st.close()
		f.st, f.server = nil, nil
		return err
	}
	return os.RemoveAll(filepath.Join(f.backing, storeName))
}

// abortLocked aborts the FUSE connection (fusectl) and detaches the mount.
func (f *FS) abortLocked() error {
	// The connection id is the minor number of the mount's device; it comes
	// from mountinfo because a stat of a stuck mount would hang.
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 || fields[4] != f.mountpoint {
			continue
		}
		_, minor, _ := strings.Cut(fields[2], ":")
		if werr := os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0o200); werr != nil {
			err = fmt.Errorf("abort FUSE connection %s of %s: %w", minor, f.mountpoint, werr)
		}
		if uerr := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); uerr != nil {
			err = errors.Join(err, fmt.Errorf("detach %s: %w", f.mountpoint, uerr))
		}
		return err
	}
	return nil
}

// unmountLocked unmounts (waiting out processes that are still exiting)
// and discards the boot's state.
func (f *FS) unmountLocked() error {
	var err error
	for i := 0; i < 3; i++ { // go-fuse retries too, for ~0.3 s
		if err = f.server.Unmount(); !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("unmount %s (is a process still using it?): %w", f.mountpoint, err)
	}
	for p, s := range f.st.stats() {
		old := f.past[p]
		f.past[p] = FileStats{Fsyncs: old.Fsyncs + s.Fsyncs, Fdatasyncs: old.Fdatasyncs + s.Fdatasyncs}
	}
	ioErr := f.st.firstErr()
	if ioErr == nil {
		ioErr = f.st.log.failed()
	}
	f.st.close()
	f.st, f.server = nil, nil
	if ioErr != nil {
		return fmt.Errorf("crashfs failed during the run: %w", ioErr)
	}
	return nil
}

// Stats returns the counters of every name in the mount, summed over the
// boots before the crashes (by name) and the current one.
func (f *FS) Stats() map[string]FileStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]FileStats, len(f.past))
	for p, s := range f.past {
		out[p] = s
	}
	if f.st != nil {
		for p, s := range f.st.stats() {
			old := out[p]
			out[p] = FileStats{Fsyncs: old.Fsyncs + s.Fsyncs, Fdatasyncs: old.Fdatasyncs + s.Fdatasyncs, Unsynced: s.Unsynced}
		}
	}
	return out
}

// dropReport lists what a crash now would drop.
func (st *state) dropReport() *CrashReport {
	rep := &CrashReport{Files: map[string]int64{}, MetaOps: st.log.dropped()}
	for p, s := range st.stats() {
		if s.Unsynced > 0 {
			rep.Files[p] = s.Unsynced
		}
	}
	return rep
}
