// Package fsutil holds the small file-system steps that durable state
// written outside the journal needs (DESIGN.md §5 rule 5).
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// SyncDir fsyncs a directory, making the creations, renames and removals
// in it durable.
func SyncDir(dir string) error {
	return syncDir(os.Open, dir)
}

// SyncDirIn is SyncDir for dir relative to root (a path of any length:
// root resolves it one component at a time).
func SyncDirIn(root *os.Root, dir string) error {
	return syncDir(root.Open, dir)
}

func syncDir(open func(string) (*os.File, error), dir string) error {
	d, err := open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// MkdirAll creates dir and its missing parents like os.MkdirAll, and
// fsyncs the parent of each directory it creates, so that they survive a
// power loss: fsync of a file or directory does not make its name durable
// (fsync(2) asks for an fsync of the containing directory too).
func MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("create dir %s: %w", dir, syscall.ENOTDIR)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("create dir %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create dir %s: %w", dir, err)
	}
	return SyncDir(parent)
}
