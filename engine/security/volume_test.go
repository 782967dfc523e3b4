package security

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

func TestVolumeTokens(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	vt := NewVolumeTokens(func() ([]byte, error) { return secret, nil })
	other := NewVolumeTokens(func() ([]byte, error) { return []byte("another cluster's secret bytes.."), nil })
	ctx := context.Background()
	good, err := vt.Sign("/volumes/pvc-a", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	u, err := vt.Authenticate(ctx, good)
	if err != nil || u.Scope != "/volumes/pvc-a" || u.Name != VolumeUser || !u.Verified {
		t.Fatalf("good token: %+v %v", u, err)
	}
	expired, _ := vt.Sign("/volumes/pvc-a", time.Now().Add(-time.Second))
	tampered := []byte(good)
	tampered[len(VolumeTokenPrefix)+2] ^= 1
	for _, tc := range []struct{ name, tok string }{
		{"expired", expired},
		{"tampered payload", string(tampered)},
		{"no MAC", strings.SplitN(good, ".", 3)[0] + "." + strings.SplitN(good, ".", 3)[1]},
		{"not a volume token", "eyJhbGciOi"},
		{"empty body", VolumeTokenPrefix},
	} {
		if _, err := vt.Authenticate(ctx, tc.tok); !errors.Is(err, meta.ErrUnauthenticated) {
			t.Errorf("%s: %v, want Unauthenticated", tc.name, err)
		}
	}
	if _, err := other.Authenticate(ctx, good); !errors.Is(err, meta.ErrUnauthenticated) {
		t.Errorf("another cluster's token: %v", err)
	}
	for _, p := range []string{"/", "volumes/x", "/volumes/../etc", ""} {
		if _, err := vt.Sign(p, time.Now().Add(time.Hour)); !errors.Is(err, meta.ErrInvalidArgument) {
			t.Errorf("sign %q: %v, want InvalidArgument", p, err)
		}
	}
	none := NewVolumeTokens(func() ([]byte, error) { return nil, nil })
	if _, err := none.Sign("/v", time.Now().Add(time.Hour)); !errors.Is(err, meta.ErrUnavailable) {
		t.Errorf("no secret yet: %v, want Unavailable", err)
	}
	// Tokens picks the verifier by prefix.
	if _, err := (Tokens{Volumes: vt}).Authenticate(ctx, "a-serviceaccount-jwt"); !errors.Is(err, meta.ErrUnauthenticated) {
		t.Errorf("a ServiceAccount token without kube: %v", err)
	}
	if u, err := (Tokens{Volumes: vt, Kube: fakeAuthn{}}).Authenticate(ctx, good); err != nil || u.Scope == "" {
		t.Errorf("a volume token with kube configured: %+v %v", u, err)
	}
}
