package master_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// TestGroupOverTLS: three masters with certificates elect a leader over the
// mTLS raft transport; a client whose first address is a standby follows
// the NotLeader redirect over mTLS; the quorum RPCs follow security.Cluster;
// the journal port completes a handshake only with a master's certificate.
func TestGroupOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := security.InitCA(ca, ""); err != nil {
		t.Fatal(err)
	}
	load := func(r security.Role) *security.Source {
		t.Helper()
		out := filepath.Join(dir, string(r))
		if err := security.Issue(ca, out, security.IssueRequest{Role: r, Name: string(r), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
			t.Fatal(err)
		}
		s, err := security.Load(out, r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	masterTLS := load(security.RoleMaster)
	g := alcovetest.StartGroup(t, 3, func(c *master.Config) { c.TLS = masterTLS })
	l := g.Leader(30 * time.Second)
	addrs := g.Addrs()
	standbyFirst := []string{addrs[(l+1)%3], addrs[(l+2)%3], addrs[l]}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newClient := func(r security.Role) *client.Client {
		t.Helper()
		c, err := client.New(client.Config{MasterAddresses: standbyFirst, TLS: load(r), RetryTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	admin, app := newClient(security.RoleAdmin), newClient(security.RoleClient)
	if _, err := admin.Mkdir(ctx, "/d", false, false, 0o755); err != nil {
		t.Fatalf("mkdir through a standby over mTLS: %v", err)
	}
	if _, err := app.GetStatus(ctx, "/d"); err != nil {
		t.Fatalf("stat through a standby over mTLS: %v", err)
	}
	q, err := admin.QuorumInfo(ctx)
	if err != nil || len(q.GetMembers()) != 3 {
		t.Fatalf("admin quorum info: %v, %v", q, err)
	}
	if _, err := app.QuorumInfo(ctx); !errors.Is(err, meta.ErrPermission) {
		t.Errorf("client quorum info: %v, want permission denied", err)
	}
	if err := app.AddQuorumMember(ctx, "x", "127.0.0.1:1"); !errors.Is(err, meta.ErrPermission) {
		t.Errorf("client adds a quorum member: %v, want permission denied", err)
	}

	// The raft port: a master's certificate gets through the handshake, a
	// worker's or none does not.
	journalAddr := q.GetMembers()[0].GetAddress()
	handshake := func(s *security.Source) error {
		var cfg *tls.Config
		if s != nil {
			_, cfg = s.PeerConfigs(security.RoleMaster)
		} else {
			cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the attacker's side
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", journalAddr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: the server checks the client certificate after the
		// client's handshake ends; its refusal arrives on the first read.
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil // accepted: raft waits for the dialer to speak
		}
		return err
	}
	if err := handshake(masterTLS); err != nil {
		t.Errorf("master certificate on the journal port: %v", err)
	}
	for name, s := range map[string]*security.Source{"worker certificate": load(security.RoleWorker), "no certificate": nil} {
		if err := handshake(s); err == nil {
			t.Errorf("%s on the journal port: accepted", name)
		}
	}
}
