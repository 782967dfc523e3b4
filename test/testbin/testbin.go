// Package testbin builds the alcove binary from this tree once per test
// process, for tests that run real daemons as subprocesses.
package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Alcove returns the path of a freshly built cmd/alcove.
func Alcove(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, derr := os.MkdirTemp("", "alcove-bin-")
		if derr != nil {
			err = derr
			return
		}
		path = filepath.Join(dir, "alcove")
		out, berr := exec.Command("go", "build", "-o", path, "github.com/alcove-io/alcove/cmd/alcove").CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("go build: %v\n%s", berr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// FreePorts returns n loopback ports free at the time of the call.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
