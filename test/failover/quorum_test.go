package failover

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cli runs the alcove CLI against every master of the group.
func (g *group) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.bin, append([]string{"--master", strings.Join(g.addrs(), ",")}, args...)...).CombinedOutput()
	return string(out), err
}

func (g *group) mustCLI(args ...string) string {
	g.t.Helper()
	out, err := g.cli(args...)
	if err != nil {
		g.fatalf("alcove %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestQuorumCLI drives `alcove fs leader` and `alcove fsadmin journal
// quorum info|remove|add|elect` against a group of master processes.
func TestQuorumCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-master group")
	}
	g := startGroup(t, groupOptions{size: 3})
	l := g.leader(30 * time.Second)
	if got := strings.TrimSpace(g.mustCLI("fs", "leader")); got != g.members[l].addr() {
		t.Fatalf("fs leader printed %q, want %s", got, g.members[l].addr())
	}
	info := g.mustCLI("fsadmin", "journal", "quorum", "info")
	if !strings.Contains(info, "Quorum size\t: 3") || strings.Count(info, "LEADER") != 1 || strings.Count(info, "AVAILABLE ") != 3 {
		t.Fatalf("quorum info:\n%s", info)
	}
	f := (l + 1) % 3
	fid, faddr := g.members[f].id, "127.0.0.1:"+strconv.Itoa(g.members[f].raft)
	g.mustCLI("fsadmin", "journal", "quorum", "remove", "--address", faddr)
	if info := g.mustCLI("fsadmin", "journal", "quorum", "info"); !strings.Contains(info, "Quorum size\t: 2") || strings.Contains(info, faddr) {
		t.Fatalf("after remove:\n%s", info)
	}
	g.mustCLI("fsadmin", "journal", "quorum", "add", "--id", fid, "--address", faddr)
	g.waitFollowing(f, g.leader(30*time.Second), 30*time.Second)
	if out := g.mustCLI("fsadmin", "journal", "quorum", "elect", "--id", fid); !strings.Contains(out, fid) {
		t.Fatalf("elect: %s", out)
	}
	if nl := g.leader(30 * time.Second); nl != f {
		t.Fatalf("leader after elect is %s, want %s", g.members[nl].id, fid)
	}
	if got := strings.TrimSpace(g.mustCLI("fs", "leader")); got != g.members[f].addr() {
		t.Fatalf("fs leader after elect printed %q, want %s", got, g.members[f].addr())
	}
	if out, err := g.cli("fsadmin", "journal", "quorum", "remove"); err == nil || !strings.Contains(out, "--address") {
		t.Fatalf("remove without a member: %v %s", err, out)
	}
}
