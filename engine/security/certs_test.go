package security

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestCACheck: a pair is kept only when it is the one asked for; every
// reason to re-issue is caught (what alcove certs kube-secrets relies on).
func TestCACheck(t *testing.T) {
	ca, err := NewCA("")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	req := IssueRequest{Role: RoleMaster, Name: "m", DNSNames: []string{"m-0.m.ns.svc.cluster.local"}}
	issue := func(ca *CA, r IssueRequest) Pair {
		p, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := issue(ca, req)
	foreign := issue(other, req)
	otherKey := issue(ca, req)
	for _, tc := range []struct {
		name string
		p    Pair
		req  IssueRequest
		want string // "" = keep
	}{
		{"valid", good, req, ""},
		{"empty", Pair{}, req, "not the cluster CA"},
		{"other CA", foreign, req, "not the cluster CA"},
		{"other CA with this ca.crt", Pair{Cert: foreign.Cert, Key: foreign.Key, CA: ca.CertPEM}, req, "not signed by the cluster CA"},
		{"mismatched key", Pair{Cert: good.Cert, Key: otherKey.Key, CA: good.CA}, req, "not a matching key pair"},
		{"garbage", Pair{Cert: []byte("x"), Key: []byte("y"), CA: ca.CertPEM}, req, "not a matching key pair"},
		{"other role", issue(ca, IssueRequest{Role: RoleWorker, Name: "m", DNSNames: req.DNSNames}), req, "role is \"worker\""},
		{"missing DNS name", good, IssueRequest{Role: RoleMaster, Name: "m", DNSNames: []string{"m-1.m.ns.svc.cluster.local"}}, "lacks the DNS name"},
		{"expiring", issue(ca, IssueRequest{Role: RoleMaster, Name: "m", DNSNames: req.DNSNames, Validity: 24 * time.Hour}), req, "expires at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ca.Check(tc.p, tc.req, 30*24*time.Hour)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			if err != nil && len(tc.p.Key) > 20 && strings.Contains(err.Error(), string(tc.p.Key[30:50])) {
				t.Fatal("the reason quotes the key")
			}
		})
	}
	// A CA read back from its PEM signs and checks the same way.
	again, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Check(good, req, time.Hour); err != nil {
		t.Fatalf("re-parsed CA: %v", err)
	}
	if _, err := ParseCA(ca.CertPEM, other.KeyPEM); err == nil || bytes.Contains([]byte(err.Error()), other.KeyPEM[30:50]) {
		t.Fatalf("CA with another CA's key: %v, want a mismatch error that does not quote the key", err)
	}
}
