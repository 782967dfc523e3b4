package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/prereq"
)

// proc is one daemon (`alcove master` or `alcove worker`) run as a real
// subprocess, restartable with the same arguments.
type proc struct {
	t    *testing.T
	name string
	args []string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// syncBuffer is a log buffer the daemon writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *proc) start() {
	p.t.Helper()
	p.log = &syncBuffer{}
	p.cmd = exec.Command(alcoveBin(p.t), p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
}

// signal sends sig and, for a terminating one, waits (bounded) for the exit.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	if wait > 0 {
		p.wait(wait)
	}
}

// waitLog waits until the daemon logged s.
func (p *proc) waitLog(s string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s never logged %q\nlog:\n%s", p.name, s, tail(p.log.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits (bounded) for the daemon to exit (on its own or signaled).
func (p *proc) wait(d time.Duration) {
	p.t.Helper()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-done
		p.t.Fatalf("%s did not exit within %v\nlog:\n%s", p.name, d, tail(p.log.String(), 4000))
	}
	p.cmd = nil
}

func (p *proc) kill9() { p.signal(syscall.SIGKILL, 10*time.Second) }

// term stops the daemon the way Kubernetes does (SIGTERM).
func (p *proc) term() { p.signal(syscall.SIGTERM, 60*time.Second) }

// procCluster is a master and workers (one per node) as real processes on
// loopback ports.
type procCluster struct {
	t       *testing.T
	base    string
	ufs     string
	master  *proc
	maddr   string
	workers map[string]*worker
	clients []*client.Client
	probe   *client.Client
}

type worker struct {
	*proc
	node, addr, web, dir string
}

// startProcs runs `alcove master` and one `alcove worker` per node. The
// master declares a worker lost after 3 s of silence.
func startProcs(t *testing.T, nodes ...string) *procCluster {
	t.Helper()
	c := &procCluster{t: t, base: t.TempDir(), workers: map[string]*worker{}}
	c.ufs = filepath.Join(c.base, "ufs")
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 2+3*len(nodes))
	c.maddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	c.master = &proc{t: t, name: "master", args: []string{"master", "--dir", filepath.Join(c.base, "master"), "--root-ufs", c.ufs,
		"--host", "127.0.0.1", "--port", strconv.Itoa(ports[0]), "--web-port", strconv.Itoa(ports[1]), "--worker-timeout", "3s"}}
	c.master.start()
	t.Cleanup(c.stop)
	for i, n := range nodes {
		p := ports[2+3*i:]
		dir := filepath.Join(c.base, "worker-"+n)
		w := &worker{node: n, dir: dir, addr: "127.0.0.1:" + strconv.Itoa(p[0]), web: "127.0.0.1:" + strconv.Itoa(p[1])}
		w.proc = &proc{t: t, name: "worker " + n, args: []string{"worker", "--master", c.maddr, "--dir", dir, "--node-name", n,
			"--host", "127.0.0.1", "--worker-port", strconv.Itoa(p[0]), "--worker-web-port", strconv.Itoa(p[1]),
			"--worker-data-port", strconv.Itoa(p[2]), "--mem-dir", filepath.Join(dir, "mem"), "--mem-size", "256MB",
			"--mem-ramdisk=false", "--domain-socket", filepath.Join(dir, "w.sock"), "--drain-timeout", "30s"}}
		w.start()
		c.workers[n] = w
	}
	for _, w := range c.workers {
		c.waitStarted(w)
	}
	return c
}

// waitStarted waits until a (re)started worker process has registered: the
// master may still list the previous process of the same address as live.
func (c *procCluster) waitStarted(w *worker) *apiv1.WorkerInfo {
	c.t.Helper()
	w.waitLog("worker started")
	return c.waitWorker(w, apiv1.WorkerState_WORKER_LIVE)
}

func (c *procCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients, c.probe = nil, nil
	for _, w := range c.workers {
		if w.cmd != nil {
			w.cmd.Process.Signal(syscall.SIGCONT)
			w.kill9()
		}
	}
	c.master.kill9()
}

// client returns a client on node writing with wt and durable copies.
func (c *procCluster) client(node string, wt apiv1.WriteType, durable int32) *client.Client {
	c.t.Helper()
	cl, err := client.New(client.Config{MasterAddresses: []string{c.maddr}, Node: node, WriteType: wt, BlockSize: 1 << 20,
		ReplicationDurable: durable, RetryTimeout: 20 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.clients = append(c.clients, cl)
	return cl
}

// workerInfo returns the master's view of w (nil when it does not know it).
func (c *procCluster) workerInfo(w *worker) *apiv1.WorkerInfo {
	if c.probe == nil {
		c.probe = c.client("probe", 0, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _ := c.probe.Workers(ctx)
	for _, info := range ws {
		if info.GetAddress() == w.addr {
			return info
		}
	}
	return nil
}

// waitWorker waits until the master reports w in state.
func (c *procCluster) waitWorker(w *worker, state apiv1.WorkerState) *apiv1.WorkerInfo {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if info := c.workerInfo(w); info != nil && info.GetState() == state {
			return info
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("worker %s never %s\nworker log:\n%s\nmaster log:\n%s", w.node, state, tail(w.log.String(), 3000), tail(c.master.log.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric reads a counter from a worker's /metrics.
func (w *worker) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.web + "/metrics")
	if err != nil {
		t.Fatalf("metrics of worker %s: %v", w.node, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("worker %s has no metric %s", w.node, name)
	return 0
}

func writeFile(t *testing.T, cl *client.Client, path string, data []byte) *apiv1.FileInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := writeWith(ctx, cl, path, data)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// writeWith writes a file and returns its info or the error.
func writeWith(ctx context.Context, cl *client.Client, path string, data []byte) (*apiv1.FileInfo, error) {
	w, err := cl.Create(ctx, path, client.WriteOptions{Recursive: true})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", path, err)
	}
	return w.Info(), nil
}

func readFile(cl *client.Client, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := cl.OpenFile(ctx, path, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func stat(t *testing.T, cl *client.Client, path string) *apiv1.FileInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fi, err := cl.GetStatus(ctx, path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi
}

// pseudoRandom returns n reproducible bytes.
func pseudoRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// immutable sets or clears the immutable attribute of dir, which makes
// even root unable to create files in it: an unwritable UFS.
func immutable(t *testing.T, dir string, on bool) {
	t.Helper()
	flag := "-i"
	if on {
		flag = "+i"
	}
	if out, err := exec.Command("chattr", flag, dir).CombinedOutput(); err != nil {
		prereq.Missing(t, "chattr %s %s: %v %s (needs root and e2fsprogs)", flag, dir, err, out)
	}
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func locationsPerBlock(fi *apiv1.FileInfo) string {
	var out []string
	for _, b := range fi.GetFileBlockInfos() {
		var nodes []string
		for _, l := range b.GetBlockInfo().GetLocations() {
			nodes = append(nodes, l.GetNode())
		}
		out = append(out, fmt.Sprint(nodes))
	}
	return strings.Join(out, " ")
}
