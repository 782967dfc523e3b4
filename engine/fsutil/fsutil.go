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
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
