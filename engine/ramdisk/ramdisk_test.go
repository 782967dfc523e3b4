package ramdisk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/test/prereq"
)

func isTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.TMPFS_MAGIC
}

// A real tmpfs is mounted, recognised again after a "crash" (reused, not
// mounted twice), never taken over when it is somebody else's, and gone
// after Unmount.
func TestMountReuseForeignUnmount(t *testing.T) {
	prereq.Root(t) // mounts a tmpfs
	dir := filepath.Join(t.TempDir(), "mem")
	d, err := Mount(dir, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if d.Reused || !isTmpfs(t, dir) {
		t.Fatalf("first mount: reused=%v tmpfs=%v", d.Reused, isTmpfs(t, dir))
	}
	m, err := at(d.Dir)
	if err != nil || m == nil || m.Source != Source {
		t.Fatalf("mountinfo at %s: %+v, %v", d.Dir, m, err)
	}
	if d.Huge != hasOpt(m.VFSOptions, "huge=within_size") {
		t.Fatalf("Huge=%v but the mount options are %q", d.Huge, m.VFSOptions)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("cached"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A worker killed before unmounting: the next one reuses the ramdisk.
	again, err := Mount(dir, 32<<20)
	if err != nil || !again.Reused {
		t.Fatalf("second mount: %+v, %v", again, err)
	}
	if ms, _ := at(d.Dir); ms == nil {
		t.Fatal("ramdisk gone")
	}
	if err := UnmountAt(dir); err != nil {
		t.Fatal(err)
	}
	if isTmpfs(t, dir) {
		if m, _ := at(d.Dir); m != nil {
			t.Fatalf("still mounted after UnmountAt: %+v", m)
		}
	}

	// Somebody else's tmpfs is left alone.
	foreign := filepath.Join(t.TempDir(), "foreign")
	os.MkdirAll(foreign, 0o755)
	if err := unix.Mount("other", foreign, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(foreign, unix.MNT_DETACH) })
	if _, err := Mount(foreign, 32<<20); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Mount over a foreign tmpfs: %v, want ErrExist", err)
	}
	if err := UnmountAt(foreign); err != nil {
		t.Fatal(err)
	}
	if m, _ := at(foreign); m == nil {
		t.Fatal("UnmountAt removed a foreign mount")
	}
}
