package bench

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/alcove-io/alcove/test/prereq"
)

// shapedLink makes a network namespace joined to this one by a veth pair
// whose two ends are both shaped by tc's token bucket filter to rate (tc
// syntax: 10gbit, 5gbit, 800mbit) and returns the namespace's name and
// its address on the link: a server started there is reached over a link
// of that speed, like an object store across a real network, not over
// loopback. Everything is deleted when the test ends. Needs root, ip and
// tc (iproute2): without them the test fails under CI=true and is skipped
// otherwise.
func shapedLink(t *testing.T, rate string) (netns, addr string) {
	t.Helper()
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			prereq.Missing(t, "a shaped link needs %s (Debian: iproute2): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("a shaped link needs root (network namespaces, veth, tc)")
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	id := os.Getpid()
	netns = fmt.Sprintf("alcove-bench-%d", id)
	host, peer := fmt.Sprintf("abh%d", id), fmt.Sprintf("abp%d", id) // interface names: at most 15 bytes
	subnet := fmt.Sprintf("10.213.%d.", id%64*4)                     // a /30 per process
	hostAddr, addr := subnet+"1", subnet+"2"
	run("ip", "netns", "add", netns)
	// Deleting the namespace deletes its end of the pair, and with it ours.
	t.Cleanup(func() { exec.Command("ip", "netns", "del", netns).Run() })
	run("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", netns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	run("ip", "addr", "add", hostAddr+"/30", "dev", host)
	run("ip", "link", "set", host, "up")
	in := []string{"ip", "netns", "exec", netns}
	run(append(in, "ip", "link", "set", "lo", "up")...)
	run(append(in, "ip", "addr", "add", addr+"/30", "dev", peer)...)
	run(append(in, "ip", "link", "set", peer, "up")...)
	// Both directions: requests out, the object's bytes back. A 2 MB
	// bucket is a couple of milliseconds at these rates.
	tbf := []string{"root", "tbf", "rate", rate, "burst", "2mb", "latency", "20ms"}
	run(append([]string{"tc", "qdisc", "add", "dev", host}, tbf...)...)
	run(append(append(in, "tc", "qdisc", "add", "dev", peer), tbf...)...)
	return netns, addr
}
