package fuse

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestReaddirPlus: ls -l of a directory costs one listing at the master,
// not a GetStatus per entry (READDIRPLUS, its lookups answered from the
// listing), and the references READDIRPLUS hands the kernel are counted
// for a handover.
func TestReaddirPlus(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, func(c *Config) { c.AttrTimeout, c.EntryTimeout = time.Second, time.Second })
	const files = 200
	for i := range files {
		e.put(t, fmt.Sprintf("/d/f%03d", i), []byte("x"))
	}
	before := masterCalls(t, e)
	out, err := exec.Command("ls", "-l", e.p("d")).CombinedOutput()
	if err != nil {
		t.Fatalf("ls -l: %v: %s", err, out)
	}
	calls := alcovetest.CallsSince(masterCalls(t, e), before)
	if calls["ListStatus"] == 0 || calls["GetStatus"] > 10 {
		t.Fatalf("ls -l of %d files: master calls %v; want a listing and no GetStatus per entry", files, calls)
	}
	e.srv.raw.mu.Lock()
	refs := len(e.srv.raw.lookups)
	e.srv.raw.mu.Unlock()
	if refs < files {
		t.Fatalf("%d nodes referenced by the kernel after ls -l of %d files: READDIRPLUS references not counted", refs, files)
	}
}

func masterCalls(t *testing.T, e *env) map[string]uint64 {
	t.Helper()
	return alcovetest.MasterCallsOf(t, e.m)
}
