// Package failover runs HA masters as real processes (`alcove master`
// subprocesses built from this tree, a raft group over TCP on loopback) with
// a worker process, kills and stops leaders, and checks what clients saw:
// fail-over time, every acknowledged operation kept, and a linearizable
// history (github.com/anishathalye/porcupine).
package failover

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/testbin"
)

// member is one `alcove master` process of the group.
type member struct {
	id        string
	rpc, web  int
	raft      int // the journal port the others dial (a proxy's when proxied)
	bind      int // the journal port it listens on
	dir, log  string
	cmd       *exec.Cmd
	exited    chan struct{}
	conn      *grpc.ClientConn // direct, no leader following
	proxy     *proxy           // in front of its journal port, or nil
	stoppedAt time.Time        // when SIGSTOPped (zero when running)
}

func (m *member) addr() string { return "127.0.0.1:" + strconv.Itoa(m.rpc) }

// group is a raft group of masters plus one worker process.
type group struct {
	t       *testing.T
	bin     string
	dir     string
	ufs     string
	peers   string
	extra   []string // extra `alcove master` flags
	members []*member

	worker     *exec.Cmd
	workerLog  string
	workerDone chan struct{}
}

type groupOptions struct {
	size    int
	proxied bool     // every journal port behind a proxy the test can cut
	extra   []string // extra master flags
}

// startGroup starts the masters and waits for a serving leader.
func startGroup(t *testing.T, o groupOptions) *group {
	t.Helper()
	// ALCOVE_FAILOVER_MASTER_FLAGS adds master flags to every test (for
	// experiments, e.g. -v=2 or --unsafe-local-reads).
	extra := append(append([]string{}, o.extra...), strings.Fields(os.Getenv("ALCOVE_FAILOVER_MASTER_FLAGS"))...)
	g := &group{t: t, bin: testbin.Alcove(t), dir: t.TempDir(), extra: extra}
	g.ufs = filepath.Join(g.dir, "ufs")
	if err := os.MkdirAll(g.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	ports := testbin.FreePorts(t, 4*o.size)
	var peers []string
	for i := range o.size {
		m := &member{id: fmt.Sprintf("m%d", i), rpc: ports[4*i], web: ports[4*i+1], raft: ports[4*i+2], bind: ports[4*i+2],
			dir: filepath.Join(g.dir, fmt.Sprintf("m%d", i)), log: filepath.Join(g.dir, fmt.Sprintf("m%d.log", i))}
		if o.proxied {
			m.bind = ports[4*i+3]
			p, err := newProxy(m.raft, m.bind)
			if err != nil {
				t.Fatal(err)
			}
			m.proxy = p
		}
		cc, err := grpc.NewClient("passthrough:///"+m.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		m.conn = cc
		g.members = append(g.members, m)
		peers = append(peers, fmt.Sprintf("%s=127.0.0.1:%d", m.id, m.raft))
	}
	g.peers = strings.Join(peers, ",")
	t.Cleanup(g.close)
	for i := range g.members {
		g.start(i)
	}
	g.leader(30 * time.Second)
	return g
}

func (g *group) addrs() []string {
	var out []string
	for _, m := range g.members {
		out = append(out, m.addr())
	}
	return out
}

// start runs member i (again, on the same directory and ports).
func (g *group) start(i int) {
	g.t.Helper()
	m := g.members[i]
	args := append([]string{"master", "--dir", m.dir, "--root-ufs", g.ufs, "--host", "127.0.0.1",
		"--port", strconv.Itoa(m.rpc), "--web-port", strconv.Itoa(m.web),
		"--journal-peers", g.peers, "--journal-id", m.id, "--journal-port", strconv.Itoa(m.raft),
		"--journal-bind", "127.0.0.1:" + strconv.Itoa(m.bind)}, g.extra...)
	m.cmd, m.exited = g.spawn(m.log, args...)
}

// spawn starts `alcove args...` logging to logPath; exited closes when the
// process has been waited for (by the goroutine spawn starts).
func (g *group) spawn(logPath string, args ...string) (*exec.Cmd, chan struct{}) {
	g.t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(g.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		g.t.Fatalf("start alcove %s: %v", args[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return cmd, exited
}

// kill9 ends member i with SIGKILL and waits for it.
func (g *group) kill9(i int) {
	m := g.members[i]
	if m.cmd == nil {
		return
	}
	if !m.stoppedAt.IsZero() {
		_ = m.cmd.Process.Signal(syscall.SIGCONT)
		m.stoppedAt = time.Time{}
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// stop pauses member i (SIGSTOP); cont resumes it.
func (g *group) stop(i int) {
	g.t.Helper()
	if err := g.members[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		g.t.Fatal(err)
	}
	g.members[i].stoppedAt = time.Now()
}

func (g *group) cont(i int) {
	g.t.Helper()
	if err := g.members[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		g.t.Fatal(err)
	}
	g.members[i].stoppedAt = time.Time{}
}

// info asks member i about itself (any member answers GetMasterInfo).
func (g *group) info(i int, timeout time.Duration) (*apiv1.GetMasterInfoResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return apiv1.NewMetaMasterClient(g.members[i].conn).GetMasterInfo(ctx, &apiv1.GetMasterInfoRequest{})
}

// leader waits for a serving leader among the running members and returns
// its index; of two claimants the higher term wins.
func (g *group) leader(timeout time.Duration) int {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		best, bestTerm := -1, int64(-1)
		for i, m := range g.members {
			if m.cmd == nil || !m.stoppedAt.IsZero() {
				continue
			}
			if info, err := g.info(i, 300*time.Millisecond); err == nil && info.GetIsLeader() && info.GetJournalTerm() > bestTerm {
				best, bestTerm = i, info.GetJournalTerm()
			}
		}
		if best >= 0 {
			return best
		}
		if time.Now().After(deadline) {
			g.fatalf("no serving leader within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFollowing waits until member i is running, knows leader l and has
// applied everything l had applied when the wait began.
func (g *group) waitFollowing(i, l int, timeout time.Duration) {
	g.t.Helper()
	li, err := g.info(l, 2*time.Second)
	if err != nil {
		g.fatalf("ask leader %s: %v", g.members[l].id, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		info, err := g.info(i, 300*time.Millisecond)
		if err == nil && info.GetLeaderJournalId() == g.members[l].id && info.GetJournalAppliedIndex() >= li.GetJournalAppliedIndex() {
			return
		}
		if time.Now().After(deadline) {
			g.fatalf("member %s did not catch up with leader %s within %v: %v %v", g.members[i].id, g.members[l].id, timeout, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWorker runs `alcove worker` against every master.
func (g *group) startWorker(node string) {
	g.t.Helper()
	ports := testbin.FreePorts(g.t, 3)
	g.workerLog = filepath.Join(g.dir, "worker.log")
	g.worker, g.workerDone = g.spawn(g.workerLog, "worker", "--master", strings.Join(g.addrs(), ","), "--dir", filepath.Join(g.dir, "worker"),
		"--host", "127.0.0.1", "--node-name", node, "--worker-port", strconv.Itoa(ports[0]),
		"--worker-web-port", strconv.Itoa(ports[1]), "--worker-data-port", strconv.Itoa(ports[2]),
		"--mem-dir", filepath.Join(g.dir, "worker", "mem"), "--mem-size", "256MB", "--mem-ramdisk=false", "--domain-socket", "none")
	c := g.client("probe-worker")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := c.Workers(context.Background())
		if err == nil && len(ws) == 1 && ws[0].GetState() == apiv1.WorkerState_WORKER_LIVE {
			return
		}
		if time.Now().After(deadline) {
			g.fatalf("worker did not register: %v %v", ws, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client returns a leader-following client of every master.
func (g *group) client(node string) *client.Client {
	g.t.Helper()
	c, err := client.New(client.Config{MasterAddresses: g.addrs(), Node: node, WriteType: apiv1.WriteType_MUST_CACHE,
		BlockSize: 1 << 20, RetryTimeout: 20 * time.Second})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

func (g *group) fatalf(format string, args ...any) {
	g.t.Helper()
	g.dumpLogs()
	g.t.Fatalf(format, args...)
}

// dumpLogs prints the tail of every process log.
func (g *group) dumpLogs() {
	logs := []string{g.workerLog}
	for _, m := range g.members {
		logs = append(logs, m.log)
	}
	for _, l := range logs {
		if l == "" {
			continue
		}
		b, _ := os.ReadFile(l)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		g.t.Logf("---- %s (tail)\n%s", filepath.Base(l), b)
	}
}

func (g *group) close() {
	if g.t.Failed() {
		g.dumpLogs()
	}
	if g.worker != nil {
		_ = g.worker.Process.Signal(syscall.SIGKILL)
		<-g.workerDone
	}
	for i, m := range g.members {
		g.kill9(i)
		m.conn.Close()
		if m.proxy != nil {
			m.proxy.close()
		}
	}
}

// proxy forwards a journal port; cut drops every connection and refuses new
// ones (a partition of the member behind it from the others' side).
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newProxy(listen, target int) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(listen))
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: "127.0.0.1:" + strconv.Itoa(target), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.mu.Unlock()
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setCut partitions (true) or heals (false) the member behind the proxy.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}
