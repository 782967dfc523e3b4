package e2e

// What the test sees of hack/cluster.sh's nodes from the host: each node is a
// process tree in its own network, mount and PID namespaces, with its
// directory at <cluster dir>/n<N> (kubelet's root, shared with the host, is
// n<N>/kubelet; /var/lib/alcove is n<N>/alcove).

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/alcove-io/alcove/engine/security"
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

// daemonConfined checks that the FUSE daemon pid runs as the node plugin
// starts it with TLS on: a TLS directory holding the CA and no private key,
// and a volume token file (csi/volumetoken.go), seen through its root.
func daemonConfined(pid string) error {
	env, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
	if err != nil {
		return err
	}
	vars := map[string]string{}
	for _, kv := range strings.Split(string(env), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	root := filepath.Join("/proc", pid, "root")
	dir, tok := vars["ALCOVE_TLS_DIR"], vars["ALCOVE_TOKEN_FILE"]
	if dir == "" || tok == "" {
		return fmt.Errorf("FUSE daemon %s: ALCOVE_TLS_DIR=%q ALCOVE_TOKEN_FILE=%q, want a CA-only directory and a volume token", pid, dir, tok)
	}
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return fmt.Errorf("FUSE daemon %s: %w", pid, err)
	}
	for _, e := range ents {
		if e.Name() != security.CAFile {
			return fmt.Errorf("FUSE daemon %s: its TLS directory %s holds %s, want only %s", pid, dir, e.Name(), security.CAFile)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, tok))
	if err != nil || !security.IsVolumeToken(string(b)) {
		return fmt.Errorf("FUSE daemon %s: %s is not a volume token (%v)", pid, tok, err)
	}
	return nil
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
