// Package integration runs the real `alcove` binary: `alcove local` as a
// subprocess on loopback ports, driven through the CLI as a user would.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/ramdisk"
	"github.com/alcove-io/alcove/test/testbin"
)

// alcoveBin builds cmd/alcove once per test binary.
func alcoveBin(t *testing.T) string { return testbin.Alcove(t) }

func freePorts(t *testing.T, n int) []int { return testbin.FreePorts(t, n) }

// cluster is one `alcove local` process.
type cluster struct {
	t      *testing.T
	bin    string
	dir    string
	ports  []int
	extra  []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	master string
	node   string
}

func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	return newClusterConf(t, "", extra...)
}

// newClusterConf starts `alcove local` with a properties file holding conf
// (read by the daemon and by every CLI command of the test).
func newClusterConf(t *testing.T, conf string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: alcoveBin(t), dir: t.TempDir(), ports: freePorts(t, 9), extra: extra, node: "node-it"}
	// The worker leaves its MEM ramdisk mounted for a restart; unmount it
	// (after stop, before the directory is removed).
	t.Cleanup(func() { ramdisk.UnmountAt(filepath.Join(c.dir, "mem")) })
	c.master = "127.0.0.1:" + strconv.Itoa(c.ports[0])
	if conf != "" {
		if err := os.WriteFile(filepath.Join(c.dir, "alcove-site.properties"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) start() {
	c.t.Helper()
	args := []string{"local", "--dir", c.dir, "--node-name", c.node,
		"--master-port", strconv.Itoa(c.ports[0]), "--master-web-port", strconv.Itoa(c.ports[1]),
		"--worker-port", strconv.Itoa(c.ports[2]), "--worker-web-port", strconv.Itoa(c.ports[3]),
		"--worker-data-port", strconv.Itoa(c.ports[4]),
		"--job-master-port", strconv.Itoa(c.ports[5]), "--job-master-web-port", strconv.Itoa(c.ports[6]),
		"--job-worker-port", strconv.Itoa(c.ports[7]), "--job-worker-web-port", strconv.Itoa(c.ports[8]),
		"--mem-dir", filepath.Join(c.dir, "mem")}
	args = append(args, c.extra...)
	c.log = &bytes.Buffer{}
	c.cmd = exec.Command(c.bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.Env = append(os.Environ(), "ALCOVE_NODE="+c.node, "ALCOVE_CONF_DIR="+c.dir)
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.run("fsadmin", "report", "capacity")
		if err == nil && strings.Contains(out, c.node) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("alcove local did not come up: %v %s\nlog:\n%s", err, out, c.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill9 ends the cluster without any chance to clean up.
func (c *cluster) kill9() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	c.cmd = nil
}

// tlsDir is the admin certificate alcove local made (the CLI's identity).
func (c *cluster) tlsDir() string { return filepath.Join(c.dir, "tls", "admin") }

func (c *cluster) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
		c.t.Errorf("alcove local did not stop within 20s of SIGINT\nlog:\n%s", c.log.String())
	}
	c.cmd = nil
}

// alive reports whether the daemon process is still running.
func (c *cluster) alive() bool {
	return c.cmd != nil && c.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// run executes an alcove CLI command against the cluster and returns stdout
// (and stderr on failure).
func (c *cluster) run(args ...string) (string, error) {
	return c.runEnv(nil, args...)
}

func (c *cluster) runEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--master", c.master, "--job-master", "127.0.0.1:" + strconv.Itoa(c.ports[5])}, args...)...)
	cmd.Env = append(append(os.Environ(), "ALCOVE_NODE="+c.node, "ALCOVE_CONF_DIR="+c.dir, "ALCOVE_TLS_DIR="+c.tlsDir()), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("alcove %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (c *cluster) mustRun(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("%v\nlog:\n%s", err, tail(c.log.String(), 4000))
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
