package master

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// TestUFSNamesAreNotURISyntax: a namespace name is a literal UFS name. A
// name such as "%2e%2e" once reached the UFS as "..", so a client could
// stat and read files outside the mounted UFS root; names with "%", "?" or
// "#" could not be loaded or named another file.
func TestUFSNamesAreNotURISyntax(t *testing.T) {
	outside := t.TempDir()
	root := filepath.Join(outside, "root")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		filepath.Join(outside, "secret"):     "outside the UFS root",
		filepath.Join(root, "a%b"):           "percent",
		filepath.Join(root, "q?x"):           "question mark",
		filepath.Join(root, "h#x"):           "hash",
		filepath.Join(root, "sub", "%2e%2e"): "a file literally named %2e%2e",
	} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startMaster(t, t.TempDir(), root)
	for _, tc := range []struct {
		path   string
		length int64
		code   codes.Code
	}{
		{"/%2e%2e/secret", 0, codes.NotFound},
		{"/%2E%2E/secret", 0, codes.NotFound},
		{"/a%b", int64(len("percent")), codes.OK},
		{"/q?x", int64(len("question mark")), codes.OK},
		{"/h#x", int64(len("hash")), codes.OK},
		{"/sub/%2e%2e", int64(len("a file literally named %2e%2e")), codes.OK},
	} {
		resp, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: tc.path})
		if status.Code(err) != tc.code {
			t.Errorf("stat %s: %v, want %v", tc.path, err, tc.code)
			continue
		}
		if err == nil && resp.GetFileInfo().GetLength() != tc.length {
			t.Errorf("stat %s: length %d, want %d (another UFS file)", tc.path, resp.GetFileInfo().GetLength(), tc.length)
		}
	}
}

// TestCompleteSymlinkRefused: completing a symbolic link (it has no block
// size) divided by zero in the master's handler — any client could crash the
// master — and the journal entry would have crashed every master replaying it.
func TestCompleteSymlinkRefused(t *testing.T) {
	c := newCluster(t)
	resp, err := c.fs.CreateSymlink(c.ctx, &apiv1.CreateSymlinkRequest{Path: "/link", Target: "/somewhere", WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: "/link", FileId: resp.GetFileInfo().GetFileId(), Length: 100})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("complete a symlink: %v, want FailedPrecondition", err)
	}
	if _, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: "/link"}); err != nil {
		t.Fatalf("master after the refused complete: %v", err)
	}
}
