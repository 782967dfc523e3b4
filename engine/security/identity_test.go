package security

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/alcove-io/alcove/engine/meta"
)

// fakeAuthn accepts the token "good" as alice; a stand-in for the
// TokenReview authenticator, which test/e2e runs against a real API server.
type fakeAuthn struct{}

func (fakeAuthn) Authenticate(_ context.Context, tok string) (User, error) {
	if tok != "good" {
		return User{}, fmt.Errorf("%w: refused", meta.ErrUnauthenticated)
	}
	return User{Name: "system:serviceaccount:a:app", Groups: []string{NamespaceGroup("a")}}, nil
}

func TestIdentify(t *testing.T) {
	in := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		authn    Authenticator
		asserted bool
		want     string
		verified bool
		err      error
	}{
		{"asserted user", in(UserHeader, "bob", GroupsHeader, "staff,dev"), nil, true, "bob", false, nil},
		{"assertion not believed", in(UserHeader, "bob"), nil, false, "", false, nil},
		{"token wins over assertion", in(UserHeader, "root", "authorization", "Bearer good"), fakeAuthn{}, true, "system:serviceaccount:a:app", true, nil},
		{"bad token", in("authorization", "Bearer bad"), fakeAuthn{}, true, "", false, meta.ErrUnauthenticated},
		{"token without an authenticator", in("authorization", "Bearer good"), nil, true, "", false, meta.ErrUnauthenticated},
		{"not a bearer token", in("authorization", "Basic x"), fakeAuthn{}, true, "", false, meta.ErrUnauthenticated},
		{"nobody", in(), fakeAuthn{}, true, "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _, err := Identify(tc.ctx, tc.authn, tc.asserted)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if u.Name != tc.want || u.Verified != tc.verified {
				t.Fatalf("user %+v, want %q verified=%v", u, tc.want, tc.verified)
			}
		})
	}
	if ns, ok := NamespaceOfGroup(NamespaceGroup("team-a")); !ok || ns != "team-a" {
		t.Fatalf("NamespaceOfGroup: %q %v", ns, ok)
	}
	if _, ok := NamespaceOfGroup("staff"); ok {
		t.Fatal("staff is not a namespace group")
	}
}
