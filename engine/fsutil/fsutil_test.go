package fsutil_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/test/crashfs"
)

// TestMkdirAllSurvivesCrash creates nested directories on a filesystem
// that keeps only the names a directory fsync made durable (crashfs,
// Strict), crashes it, and looks: os.MkdirAll loses them, MkdirAll does not.
func TestMkdirAllSurvivesCrash(t *testing.T) {
	tests := []struct {
		name     string
		mkdirAll func(string) error
		want     bool
	}{
		{"fsutil.MkdirAll", fsutil.MkdirAll, true},
		{"os.MkdirAll", func(d string) error { return os.MkdirAll(d, 0o755) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := crashfs.New(t, crashfs.Options{Model: crashfs.Strict})
			dir := fsys.Path("a", "b", "c")
			if err := tc.mkdirAll(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Crash(); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(dir)
			if got := err == nil; got != tc.want {
				t.Fatalf("a/b/c after the crash: %v; want it there: %v", err, tc.want)
			}
		})
	}
}

func TestMkdirAllOverAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{f, filepath.Join(f, "sub")} {
		if err := fsutil.MkdirAll(d); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("MkdirAll(%s) = %v, want ENOTDIR", d, err)
		}
	}
	if err := fsutil.MkdirAll(filepath.Dir(f)); err != nil {
		t.Errorf("MkdirAll of an existing directory: %v", err)
	}
}
