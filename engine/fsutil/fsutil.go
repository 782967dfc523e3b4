// Package fsutil holds the small file-system steps that durable state
// written outside the journal needs (DESIGN.md §5 rule 5).
package fsutil

import (
	"fmt"
	"os"
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
