package e2e

// What the test sees of hack/cluster.sh's nodes from the host: each node is a
// process tree in its own network, mount and PID namespaces, with its
// directory at <cluster dir>/n<N> (kubelet's root, shared with the host, is
// n<N>/kubelet; /var/lib/alcove is n<N>/alcove).

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// nodeDir is the directory of a node of the cluster.
func (c *cluster) nodeDir(node string) string {
	for i, n := range c.nodes {
		if n == node {
			return filepath.Join(c.dir, "n"+strconv.Itoa(i+1))
		}
	}
	c.t.Fatalf("%s is not a node of the cluster (%v)", node, c.nodes)
	return ""
}

// pidNamespace is the inode of a node's PID namespace (recorded by
// hack/cluster.sh), or 0.
func (c *cluster) pidNamespace(node string) uint64 {
	b, err := os.ReadFile(filepath.Join(c.nodeDir(node), "pidns"))
	if err != nil {
		return 0
	}
	ino, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return ino
}

// fuseDaemons lists the host pids of the `alcove fuse` processes running on
// the given nodes (all nodes when none are given).
func (c *cluster) fuseDaemons(nodes ...string) []string {
	if len(nodes) == 0 {
		nodes = c.nodes
	}
	want := map[uint64]bool{}
	for _, n := range nodes {
		want[c.pidNamespace(n)] = true
	}
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != "alcove" || args[1] != "fuse" {
			continue
		}
		st, err := os.Stat(filepath.Join(filepath.Dir(p), "ns", "pid"))
		if err != nil {
			continue
		}
		if want[st.Sys().(*syscall.Stat_t).Ino] {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	sort.Strings(pids)
	return pids
}

// leftovers lists Alcove mounts the host sees on the nodes (FUSE mounts,
// CSI staging and publish targets under each node's kubelet root) and live
// `alcove fuse` daemons.
func (c *cluster) leftovers() []string {
	var left []string
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || !strings.HasPrefix(f[4], c.dir+"/") {
			continue
		}
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		fstype := ""
		if sep+1 < len(f) {
			fstype = f[sep+1]
		}
		if strings.HasPrefix(fstype, "fuse") || strings.Contains(f[4], "csi.alcove.io") || strings.Contains(f[4], "kubernetes.io~csi") {
			left = append(left, "mount "+f[4]+" ("+fstype+")")
		}
	}
	for _, d := range c.fuseDaemons() {
		left = append(left, "FUSE daemon pid "+d)
	}
	return left
}
