package masterconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/masterconn"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/test/alcovetest"
)

func newConn(t *testing.T, addrs []string, retry time.Duration) *masterconn.Conn {
	t.Helper()
	c, err := masterconn.New(masterconn.Config{Addresses: addrs, RetryTimeout: retry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mkdir(ctx context.Context, c *masterconn.Conn, p string) error {
	_, err := apiv1.NewFileSystemMasterClient(c).CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: p, WriteType: apiv1.WriteType_MUST_CACHE})
	return meta.FromStatus(err)
}

// TestFollowsTheLeader: a connection that knows only a standby is sent to
// the leader; after the leader stops, calls go on with the new one.
func TestFollowsTheLeader(t *testing.T) {
	g := alcovetest.StartGroup(t, 3)
	ctx := context.Background()
	l := g.Leader(30 * time.Second)
	standby := g.Addrs()[(l+1)%3]
	c := newConn(t, []string{standby}, 15*time.Second)
	if err := mkdir(ctx, c, "/a"); err != nil {
		t.Fatal(err)
	}
	if c.Target() != g.Masters[l].AdvertisedAddr() {
		t.Fatalf("target %s, want the leader %s", c.Target(), g.Masters[l].AdvertisedAddr())
	}
	all := newConn(t, g.Addrs(), 15*time.Second)
	if err := mkdir(ctx, all, "/b"); err != nil {
		t.Fatal(err)
	}
	g.Stop(l)
	start := time.Now()
	if err := mkdir(ctx, all, "/c"); err != nil {
		t.Fatalf("after the leader stopped: %v", err)
	}
	t.Logf("first call after the leader stopped took %v", time.Since(start))
	nl := g.Leader(30 * time.Second)
	if all.Target() != g.Masters[nl].AdvertisedAddr() {
		t.Fatalf("target %s, want the new leader %s", all.Target(), g.Masters[nl].AdvertisedAddr())
	}
}

// TestAbandonsStuckMaster: an attempt on a master that accepts connections
// but never answers (like a SIGSTOPped process) is abandoned once another
// master is found leading.
func TestAbandonsStuckMaster(t *testing.T) {
	g := alcovetest.StartGroup(t, 1)
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	c := newConn(t, []string{hole.Addr().String(), g.Addrs()[0]}, 15*time.Second)
	start := time.Now()
	if err := mkdir(context.Background(), c, "/stuck"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to leave the stuck master", d)
	}
}

// TestGivesUp: with no master reachable a call fails after RetryTimeout
// with an error that says what to check.
func TestGivesUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newConn(t, []string{addr}, 300*time.Millisecond)
	start := time.Now()
	err = mkdir(context.Background(), c, "/x")
	if !errors.Is(err, meta.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach the master at "+addr) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if _, err := masterconn.New(masterconn.Config{}); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Fatalf("no addresses: %v", err)
	}
}
