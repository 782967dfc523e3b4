package fuse

import (
	"testing"

	"github.com/alcove-io/alcove/test/fsx"
)

// TestFSX replays random file operations through the mount and on a local
// directory and compares them (test/fsx); through the kernel, it also
// flips files between passthrough and the page cache all the time.
func TestFSX(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	fsx.Run(t, fsx.Dir(e.mnt), fsx.Dir(t.TempDir()), fsx.Ops())
}
