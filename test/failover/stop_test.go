package failover

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// TestStoppedLeaderCannotServe: a SIGSTOPped leader, resumed while another
// leader serves, neither acknowledges the writes nor answers the reads that
// reached it (they were queued while it was stopped, after the new leader
// acknowledged changes they must see): each is refused or answered in line
// with the new leader's state. The broken variant, --unsafe-local-reads (no
// leadership check, no read barrier), must be caught answering stale reads.
func TestStoppedLeaderCannotServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-master group")
	}
	t.Run("read-barrier", func(t *testing.T) {
		for _, s := range stoppedLeaderAnswers(t, nil) {
			t.Errorf("stale read: %s", s)
		}
	})
	t.Run("unsafe-local-reads", func(t *testing.T) {
		stale := stoppedLeaderAnswers(t, []string{"--unsafe-local-reads"})
		if len(stale) == 0 {
			t.Fatal("the resumed old leader served no stale read without the read barrier: this test cannot tell the barrier works")
		}
		for _, s := range stale {
			t.Logf("caught, as it must be: %s", s)
		}
	})
}

// stoppedLeaderAnswers runs the scenario and returns the stale answers.
func stoppedLeaderAnswers(t *testing.T, extra []string) (stale []string) {
	g := startGroup(t, groupOptions{size: 3, extra: extra})
	ctx := context.Background()
	c := g.client("stop-client")
	for _, d := range []string{"/s", "/s/x"} {
		if _, err := c.Mkdir(ctx, d, false, false, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := g.leader(30 * time.Second)
	direct := apiv1.NewFileSystemMasterClient(g.members[old].conn)
	if _, err := direct.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/s/x"}); err != nil {
		t.Fatalf("old leader before the stop: %v", err)
	}
	g.stop(old)
	nl := g.leader(30 * time.Second)
	if err := c.Delete(ctx, "/s/x", false, false); err != nil {
		t.Fatal(err)
	}
	y, err := c.Mkdir(ctx, "/s/y", false, false, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s stopped; %s leads and acknowledged delete /s/x, mkdir /s/y", g.members[old].id, g.members[nl].id)

	type answer struct {
		what string
		fi   *apiv1.FileInfo
		err  error
	}
	answers := make(chan answer, 3)
	call := func(what string, fn func(context.Context) (*apiv1.FileInfo, error)) {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			fi, err := fn(cctx)
			answers <- answer{what, fi, err}
		}()
	}
	call("get /s/x", func(ctx context.Context) (*apiv1.FileInfo, error) {
		r, err := direct.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/s/x"})
		return r.GetFileInfo(), err
	})
	call("get /s/y", func(ctx context.Context) (*apiv1.FileInfo, error) {
		r, err := direct.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/s/y"})
		return r.GetFileInfo(), err
	})
	call("mkdir /s/z", func(ctx context.Context) (*apiv1.FileInfo, error) {
		r, err := direct.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: "/s/z", WriteType: apiv1.WriteType_MUST_CACHE})
		return r.GetFileInfo(), err
	})
	// The calls cannot be observed arriving at a stopped process; give them
	// a moment to be written to its sockets so they are served the instant
	// it resumes (if they are not, they arrive right after: same checks).
	time.Sleep(200 * time.Millisecond)
	g.cont(old)
	zWritten := false
	for range 3 {
		a := <-answers
		switch {
		case status.Code(a.err) == codes.Unavailable:
			t.Logf("%s on the resumed old leader: refused (%v)", a.what, meta.FromStatus(a.err))
		case a.what == "get /s/x" && status.Code(a.err) != codes.NotFound:
			stale = append(stale, fmt.Sprintf("get /s/x returned id %d, %v after the new leader deleted it", a.fi.GetFileId(), a.err))
		case a.what == "get /s/y" && (a.err != nil || a.fi.GetFileId() != y.GetFileId()):
			stale = append(stale, fmt.Sprintf("get /s/y returned id %d, %v after the new leader created it", a.fi.GetFileId(), a.err))
		case a.what == "mkdir /s/z" && a.err != nil:
			t.Errorf("mkdir /s/z on the resumed old leader: %v", a.err)
		case a.what == "mkdir /s/z":
			zWritten = true // acknowledged only if it led again: then it must be there
		}
	}
	_, err = c.GetStatus(ctx, "/s/z")
	if zWritten != (err == nil) {
		t.Fatalf("mkdir /s/z acknowledged=%v, but /s/z on the leader: %v", zWritten, err)
	}
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatal(err)
	}
	return stale
}

// TestCheckerCatchesStaleReads shows the linearizability check can fail: a
// member cut off from the group (its journal port partitioned) keeps serving
// reads from stale state when run with --unsafe-local-reads (no leadership
// check), and porcupine flags the history. The same history with the real
// read path is linearizable: the cut-off member refuses (or sends the client
// to the leader).
func TestCheckerCatchesStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-master group")
	}
	for _, tc := range []struct {
		name   string
		extra  []string
		result porcupine.CheckResult
	}{
		{"unsafe-local-reads", []string{"--unsafe-local-reads"}, porcupine.Illegal},
		{"read-barrier", nil, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGroup(t, groupOptions{size: 3, proxied: true, extra: tc.extra})
			ctx := context.Background()
			c := g.client("partition-client")
			if _, err := c.Mkdir(ctx, "/ns/g0", true, true, 0o755); err != nil {
				t.Fatal(err)
			}
			l := g.leader(30 * time.Second)
			f := (l + 1) % 3
			g.waitFollowing(f, l, 30*time.Second)
			g.members[f].proxy.setCut(true)
			h := newHistory()
			doOp(ctx, c, h, 0, nsInput{kind: opCreate, group: 0, slot: 0})
			cut, err := client.New(client.Config{MasterAddresses: []string{g.members[f].addr()}, Node: "cut-client", RetryTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cut.Close()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			doOp(cctx, cut, h, 1, nsInput{kind: opGet, group: 0, slot: 0})
			for _, op := range h.ops {
				t.Logf("%s", nsModel.DescribeOperation(op.Input, op.Output))
			}
			if got := checkHistory(t, h, time.Minute); got != tc.result {
				t.Fatalf("porcupine: %v, want %v", got, tc.result)
			}
			if tc.result == porcupine.Illegal {
				fmt.Println("stale read from a partitioned member: porcupine reports a linearizability violation, as it must")
			}
		})
	}
}
