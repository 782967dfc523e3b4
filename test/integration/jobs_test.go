package integration

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/conf"
)

// jobCluster runs every daemon as its own process: a master, two workers
// on distinct node names, a job master and a job worker per node, so that
// any one of them can be killed with SIGKILL.
type jobCluster struct {
	t         *testing.T
	bin, dir  string
	master    string
	jobMaster string
	ports     []int
	procs     map[string]*exec.Cmd
	logs      map[string]*bytes.Buffer
	bandwidth string
}

var jobNodes = []string{"n1", "n2"}

func newJobCluster(t *testing.T, memSize, bandwidth string) *jobCluster {
	t.Helper()
	c := &jobCluster{t: t, bin: alcoveBin(t), dir: t.TempDir(), ports: freePorts(t, 14), procs: map[string]*exec.Cmd{},
		logs: map[string]*bytes.Buffer{}, bandwidth: bandwidth}
	c.master = "127.0.0.1:" + strconv.Itoa(c.ports[0])
	c.jobMaster = "127.0.0.1:" + strconv.Itoa(c.ports[2])
	t.Cleanup(c.stopAll)
	c.start("master", "master", "--dir", filepath.Join(c.dir, "master"), "--root-ufs", filepath.Join(c.dir, "ufs"),
		"--port", strconv.Itoa(c.ports[0]), "--web-port", strconv.Itoa(c.ports[1]), "--worker-timeout", "3s")
	for i, n := range jobNodes {
		p := c.ports[4+i*5:]
		c.start("worker-"+n, "worker", "--dir", filepath.Join(c.dir, n), "--node-name", n, "--mem-dir", filepath.Join(c.dir, n, "mem"),
			"--mem-size", memSize, "--mem-ramdisk=false", "--worker-port", strconv.Itoa(p[0]), "--worker-web-port", strconv.Itoa(p[1]),
			"--worker-data-port", strconv.Itoa(p[2]))
	}
	c.startJobMaster()
	for _, n := range jobNodes {
		c.startJobWorker(n)
	}
	c.waitUp()
	return c
}

func (c *jobCluster) startJobMaster() {
	c.start("job-master", "job-master", "--dir", filepath.Join(c.dir, "job"), "--port", strconv.Itoa(c.ports[2]),
		"--web-port", strconv.Itoa(c.ports[3]), "--worker-timeout", "2s")
}

func (c *jobCluster) startJobWorker(n string) {
	i := 0
	if n == "n2" {
		i = 1
	}
	p := c.ports[4+i*5:]
	c.start("job-worker-"+n, "job-worker", "--node-name", n, "--port", strconv.Itoa(p[3]), "--web-port", strconv.Itoa(p[4]),
		"--bandwidth", c.bandwidth, "--node-labels", "disk=fast,name="+n)
}

func (c *jobCluster) start(name string, args ...string) {
	c.t.Helper()
	log := &bytes.Buffer{}
	cmd := exec.Command(c.bin, append([]string{"--master", c.master, "--job-master", c.jobMaster}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "ALCOVE_CONF_DIR="+c.dir)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs[name], c.logs[name] = cmd, log
}

// waitUp waits until both workers and both job workers are registered.
func (c *jobCluster) waitUp() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.run("fsadmin", "report", "capacity")
		metrics, _ := c.run("job", "ls")
		if err == nil && strings.Contains(out, "n1") && strings.Contains(out, "n2") && strings.Contains(metrics, "ID") && c.jobWorkers() == 2 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not come up: %v %s\n%s", err, out, c.allLogs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jobWorkers reads alcove_job_workers from the job master's /metrics.
func (c *jobCluster) jobWorkers() int {
	out, err := exec.Command("curl", "-sf", "http://127.0.0.1:"+strconv.Itoa(c.ports[3])+"/metrics").Output()
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "alcove_job_workers "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

func (c *jobCluster) kill9(name string) {
	c.t.Helper()
	cmd := c.procs[name]
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	_ = cmd.Wait()
	delete(c.procs, name)
}

func (c *jobCluster) stopAll() {
	for name, cmd := range c.procs {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			c.t.Errorf("%s did not stop within 20s of SIGINT", name)
		}
		delete(c.procs, name)
	}
}

func (c *jobCluster) allLogs() string {
	var b strings.Builder
	for name, l := range c.logs {
		b.WriteString("--- " + name + "\n" + tail(l.String(), 3000) + "\n")
	}
	return b.String()
}

func (c *jobCluster) run(args ...string) (string, error) {
	cmd := exec.Command(c.bin, append([]string{"--master", c.master, "--job-master", c.jobMaster}, args...)...)
	cmd.Env = append(os.Environ(), "ALCOVE_CONF_DIR="+c.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), &cmdError{err: err, stderr: stderr.String()}
	}
	return stdout.String() + stderr.String(), nil
}

func (c *jobCluster) mustRun(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("alcove %s: %v\n%s", strings.Join(args, " "), err, c.allLogs())
	}
	return out
}

// tree writes files of fileSize bytes (random, so checksums mean
// something) under UFS dir/name until total bytes.
func (c *jobCluster) tree(name string, total, fileSize int64) {
	c.t.Helper()
	dir := filepath.Join(c.dir, "ufs", name)
	buf := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{7})
	for i := int64(0); i*fileSize < total; i++ {
		sub := filepath.Join(dir, "part-"+strconv.FormatInt(i%4, 10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			c.t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(sub, "file-"+strconv.FormatInt(i, 10)))
		if err != nil {
			c.t.Fatal(err)
		}
		for left := min(fileSize, total-i*fileSize); left > 0; left -= int64(len(buf)) {
			_, _ = r.Read(buf)
			if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				c.t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			c.t.Fatal(err)
		}
	}
}

type jobJSON struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Percent int    `json:"percent"`
	Message string `json:"message"`
}

// submitted returns the job id from `--async` output.
func submitted(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "Job" {
		t.Fatalf("no job id in %q", out)
	}
	return f[1]
}

func (c *jobCluster) waitJob(id string, timeout time.Duration) jobJSON {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// A job master that just restarted may not listen yet.
		out, err := c.run("job", "stat", "-o", "json", id)
		var j jobJSON
		if err == nil {
			if err = json.Unmarshal([]byte(out), &j); err == nil && j.State != "JOB_RUNNING" {
				return j
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s still running after %v: %+v %v\n%s", id, timeout, j, err, c.allLogs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *jobCluster) treeStat(p string) statJSON {
	c.t.Helper()
	var s statJSON
	if err := json.Unmarshal([]byte(c.mustRun("fs", "stat", "-o", "json", p)), &s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// nodeBytes sums the cached bytes per node under p.
func (c *jobCluster) nodeBytes(p string) map[string]int64 {
	c.t.Helper()
	var files []statJSON
	if err := json.Unmarshal([]byte(c.mustRun("fs", "ls", "-R", "-o", "json", p)), &files); err != nil {
		c.t.Fatal(err)
	}
	per := map[string]int64{}
	for _, f := range files {
		if f.BlockSizeBytes == 0 {
			continue // a directory
		}
		f := c.treeStat(f.Path) // ls does not show block locations; stat does
		for _, b := range f.Blocks {
			for _, l := range b.Locations {
				per[l.Node] += b.Length
			}
		}
	}
	return per
}

// loadBytes is the tree size of TestDistributedLoad: ALCOVE_LOAD_BYTES
// (make test-load sets 4GiB), 256 MiB by default.
func loadBytes(t *testing.T) int64 {
	s := os.Getenv("ALCOVE_LOAD_BYTES")
	if s == "" {
		return 256 << 20
	}
	n, err := conf.ParseSize(s)
	if err != nil || n <= 0 {
		t.Fatalf("ALCOVE_LOAD_BYTES=%q: %v", s, err)
	}
	return n
}

// Acceptance 1: distributedLoad of a tree onto two workers reaches 100 %,
// printing progress; --percent 50 stops at 50 % and no more than a block
// over; --nodes puts blocks only there.
func TestDistributedLoad(t *testing.T) {
	total := loadBytes(t)
	mem := strconv.FormatInt(total/(1<<20)+512, 10) + "MB" // either node can hold the whole tree
	c := newJobCluster(t, mem, "0")
	c.tree("tree", total, min(256<<20, total/16))
	const block = 64 << 20

	out := c.mustRun("fs", "distributedLoad", "/tree", "--percent", "50")
	if !strings.Contains(out, "completed") || !strings.Contains(out, "job 1 ") {
		t.Fatalf("distributedLoad --percent 50 output: %q", out)
	}
	pct := c.treeStat("/tree").InAlcove
	if over := int(100*block/total) + 1; pct < 50 || pct > 50+over {
		t.Fatalf("--percent 50 cached %d%% (want 50..%d)", pct, 50+over)
	}
	start := time.Now()
	out = c.mustRun("fs", "distributedLoad", "/tree")
	t.Logf("distributedLoad of %d MiB: %v\n%s", total>>20, time.Since(start), out)
	if got := c.treeStat("/tree").InAlcove; got != 100 {
		t.Fatalf("after distributedLoad: %d%% in Alcove", got)
	}
	per := c.nodeBytes("/tree")
	if per["n1"] == 0 || per["n2"] == 0 || per["n1"]+per["n2"] != total {
		t.Fatalf("cached per node %v, want both nodes and %d bytes in all", per, total)
	}

	c.mustRun("fs", "free", "/tree")
	c.mustRun("fs", "distributedLoad", "/tree", "--nodes", "n2")
	if per := c.nodeBytes("/tree"); per["n1"] != 0 || per["n2"] != total {
		t.Fatalf("--nodes n2: cached %v", per)
	}
	c.mustRun("fs", "free", "/tree")
	c.mustRun("fs", "distributedLoad", "/tree", "--node-selector", "name=n1")
	if per := c.nodeBytes("/tree"); per["n2"] != 0 || per["n1"] != total {
		t.Fatalf("--node-selector name=n1: cached %v", per)
	}
	if _, err := c.run("fs", "distributedLoad", "/tree", "--nodes", "n1", "--node-selector", "a=b"); err == nil {
		t.Fatal("--nodes with --node-selector accepted")
	}
}

// Acceptance 2: kill -9 a job worker mid-load (its tasks finish on the
// other node), kill -9 the job master mid-load (the job resumes from its
// store after the restart and completes).
func TestJobFaults(t *testing.T) {
	const total = 768 << 20
	c := newJobCluster(t, "1GB", "64MB") // 64 MB/s per job worker: a load takes ~6 s
	c.tree("tree", total, 64<<20)

	id := submitted(t, c.mustRun("fs", "distributedLoad", "/tree", "--async"))
	c.waitPartial("/tree", "n1")
	c.kill9("job-worker-n1")
	j := c.waitJob(id, 2*time.Minute)
	if j.State != "JOB_COMPLETED" || c.treeStat("/tree").InAlcove != 100 {
		t.Fatalf("after kill -9 of a job worker: %+v, %d%%\n%s", j, c.treeStat("/tree").InAlcove, c.allLogs())
	}
	per := c.nodeBytes("/tree")
	if per["n1"] == 0 || per["n2"] <= per["n1"] {
		t.Fatalf("the killed job worker's share did not move to n2: %v", per)
	}
	c.startJobWorker("n1")

	c.mustRun("fs", "free", "/tree")
	id = submitted(t, c.mustRun("fs", "distributedLoad", "/tree", "--async"))
	c.waitPartial("/tree", "")
	c.kill9("job-master")
	if pct := c.treeStat("/tree").InAlcove; pct >= 100 {
		t.Fatalf("load finished before the job master was killed (%d%%): make the tree bigger", pct)
	}
	c.startJobMaster()
	j = c.waitJob(id, 2*time.Minute)
	if j.State != "JOB_COMPLETED" || j.Percent != 100 || c.treeStat("/tree").InAlcove != 100 {
		t.Fatalf("after kill -9 of the job master: %+v\n%s", j, c.allLogs())
	}
}

// waitPartial waits until some of p is cached (on node, if given).
func (c *jobCluster) waitPartial(p, node string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		per := c.nodeBytes(p)
		if (node == "" && len(per) > 0) || per[node] > 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nothing of %s cached after a minute\n%s", p, c.allLogs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Acceptance 3: distributedCp of a tree across two mounts gives equal
// checksums; distributedMv leaves no source behind.
func TestDistributedCopyAndMove(t *testing.T) {
	c := newJobCluster(t, "512MB", "0")
	c.tree("src", 40<<20, 3<<20)
	other := filepath.Join(c.dir, "other-ufs")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	c.mustRun("fs", "mount", "/other", other)
	out := c.mustRun("fs", "distributedCp", "/src", "/other/dst")
	if !strings.Contains(out, "completed") {
		t.Fatalf("distributedCp: %q", out)
	}
	var files []statJSON
	if err := json.Unmarshal([]byte(c.mustRun("fs", "ls", "-R", "-o", "json", "/src")), &files); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if f.BlockSizeBytes == 0 { // a directory
			continue
		}
		n++
		rel := strings.TrimPrefix(f.Path, "/src")
		a := c.mustRun("fs", "checksum", f.Path)
		b := c.mustRun("fs", "checksum", "/other/dst"+rel)
		if strings.Fields(a)[len(strings.Fields(a))-1] != strings.Fields(b)[len(strings.Fields(b))-1] {
			t.Fatalf("checksums differ: %s / %s", a, b)
		}
		if got, want := fileSum(t, filepath.Join(other, "dst", rel)), fileSum(t, filepath.Join(c.dir, "ufs", "src", rel)); got != want {
			t.Fatalf("UFS copies of %s differ", rel)
		}
	}
	if n != 14 {
		t.Fatalf("copied %d files, want 14", n)
	}
	c.mustRun("fs", "distributedMv", "/other/dst", "/moved")
	if _, err := c.run("fs", "stat", "/other/dst"); err == nil {
		t.Fatal("distributedMv left the source behind")
	}
	if _, err := os.Stat(filepath.Join(other, "dst")); !os.IsNotExist(err) {
		t.Fatalf("distributedMv left the source in the UFS: %v", err)
	}
	if _, err := c.run("fs", "distributedCp", "/src", "/src/inside"); err == nil {
		t.Fatal("a copy into its own source was accepted")
	}
}
