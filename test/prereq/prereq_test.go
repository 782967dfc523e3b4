package prereq

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissing runs Binary for a missing file in a child test process with
// and without CI=true: it must fail there and skip here.
func TestMissing(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") != "" {
		Binary(t, "/nonexistent/alcove")
		return
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantText string
	}{
		{ci: "true", wantFail: true, wantText: "CI=true: a missing prerequisite fails"},
		{ci: "", wantFail: false, wantText: "SKIP"},
		{ci: "false", wantFail: false, wantText: "SKIP"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.wantText) {
			t.Errorf("CI=%q: err %v, output:\n%s", tc.ci, err, out)
		}
	}
}
