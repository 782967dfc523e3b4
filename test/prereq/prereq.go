// Package prereq checks what a test needs from the machine: root,
// /dev/fuse, a built binary. A missing prerequisite skips the test with a
// message on a developer's machine and fails it under CI (CI=true), so a
// CI run can never pass by skipping.
//
//	prereq.Root(t)
//	prereq.DevFuse(t)
//	prereq.Binary(t, "bin/alcove")
package prereq

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// CI reports whether the tests run in CI (CI=true or another true value).
func CI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Missing fails (CI) or skips (otherwise) t because what is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("missing prerequisite: %s (CI=true: a missing prerequisite fails the test)", what)
	}
	t.Skipf("missing prerequisite: %s", what)
}

// Root requires running as root (mount(2), /dev/fuse passthrough).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (running as uid %d)", os.Geteuid())
	}
}

// DevFuse requires /dev/fuse to be openable.
func DevFuse(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		Missing(t, "/dev/fuse: %v", err)
		return
	}
	f.Close()
}

// Binary requires the file at path (a built binary) to exist.
func Binary(t testing.TB, path string) {
	t.Helper()
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		Missing(t, "binary %s (build it first): %v", path, err)
	}
}
