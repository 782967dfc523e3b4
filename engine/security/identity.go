package security

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/alcove-io/alcove/engine/meta"
)

// User identity, next to the component identity of the certificate: who a
// call acts for. Two kinds:
//
//   - SIMPLE (Alluxio's name): the caller asserts a user and groups in the
//     alcove-user and alcove-groups metadata. The OS user of alcove local
//     and of the CLI; believed from callers with a component or admin
//     certificate (node agents act for the pods they serve) and with TLS
//     off; a client certificate is the application it names.
//   - Kubernetes: the caller sends a pod's projected ServiceAccount token
//     (audience alcove) as "authorization: Bearer"; the master verifies it
//     with a TokenReview (tokenreview.go) and the user is
//     system:serviceaccount:NS:NAME with groups system:serviceaccounts:NS,
//     system:serviceaccounts and system:authenticated. A verified token
//     wins over asserted names, and is the only way in without a
//     certificate.

// Metadata keys.
const (
	UserHeader   = "alcove-user"
	GroupsHeader = "alcove-groups" // comma-separated
	authHeader   = "authorization"
	bearerPrefix = "Bearer "
	// Audience is the audience of the ServiceAccount tokens Alcove accepts.
	Audience = "alcove"
	// RoleUser is the pseudo-role of a caller without a certificate that
	// proved a user identity with a token. It is never in a certificate.
	RoleUser Role = "user"
)

// User is who a call acts for.
type User struct {
	Name   string
	Groups []string
	// Verified: proven by a token, not asserted.
	Verified bool
}

// InGroup reports whether u is in group g.
func (u User) InGroup(g string) bool {
	for _, x := range u.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// Authenticator turns a bearer token into a user. Errors wrap
// meta.ErrUnauthenticated and never quote the token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (User, error)
}

type userKey struct{}

// UserFrom returns the user a call acts for, when it named one.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// WithUser is a server-side context with u as the caller (tests, and
// callers inside the master).
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// OutgoingUser adds a SIMPLE identity to an outgoing call's metadata.
func OutgoingUser(ctx context.Context, name string, groups []string) context.Context {
	if name == "" {
		return ctx
	}
	ctx = metadata.AppendToOutgoingContext(ctx, UserHeader, name)
	if len(groups) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, GroupsHeader, strings.Join(groups, ","))
	}
	return ctx
}

// OutgoingToken adds a bearer token to an outgoing call's metadata.
func OutgoingToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, authHeader, bearerPrefix+token)
}

// Identify derives the user of a call from its metadata. hasCert says
// whether the connection presented a certificate (or TLS is off, where
// nobody does and assertions are all there is).
func Identify(ctx context.Context, authn Authenticator, trustAsserted bool) (User, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(authHeader); len(v) > 0 {
		tok, ok := strings.CutPrefix(v[0], bearerPrefix)
		if !ok || tok == "" {
			return User{}, false, fmt.Errorf("%w: authorization metadata is not a bearer token", meta.ErrUnauthenticated)
		}
		if authn == nil {
			return User{}, false, fmt.Errorf("%w: this master does not accept ServiceAccount tokens (no Kubernetes API configured)", meta.ErrUnauthenticated)
		}
		u, err := authn.Authenticate(ctx, tok)
		if err != nil {
			return User{}, false, err
		}
		u.Verified = true
		return u, true, nil
	}
	if !trustAsserted {
		return User{}, false, nil
	}
	if v := md.Get(UserHeader); len(v) > 0 && v[0] != "" {
		u := User{Name: v[0]}
		if g := md.Get(GroupsHeader); len(g) > 0 && g[0] != "" {
			u.Groups = strings.Split(g[0], ",")
		}
		return u, true, nil
	}
	return User{}, false, nil
}

// Identifier is a pair of interceptors that put the caller's user into the
// context for servers without TLS (with TLS, the Authorizer does it).
type Identifier struct{ Users Authenticator }

// Unary is a grpc.UnaryServerInterceptor.
func (i Identifier) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	u, ok, err := Identify(ctx, i.Users, true)
	if err != nil {
		return nil, meta.ToStatus(fmt.Errorf("%s: %w", info.FullMethod, err))
	}
	if ok {
		ctx = WithUser(ctx, u)
	}
	return h(ctx, req)
}

// Stream is a grpc.StreamServerInterceptor.
func (i Identifier) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	u, ok, err := Identify(ss.Context(), i.Users, true)
	if err != nil {
		return meta.ToStatus(fmt.Errorf("%s: %w", info.FullMethod, err))
	}
	if ok {
		return h(srv, &peerStream{ServerStream: ss, ctx: WithUser(ss.Context(), u)})
	}
	return h(srv, ss)
}

// namespaceGroupPrefix starts the group Kubernetes puts every
// ServiceAccount of a namespace in.
const namespaceGroupPrefix = "system:serviceaccounts:"

// NamespaceGroup is the group of the ServiceAccounts of namespace ns: the
// group a volume's directory gets, so that only pods of ns reach it.
func NamespaceGroup(ns string) string { return namespaceGroupPrefix + ns }

// NamespaceOfGroup reports the namespace a NamespaceGroup names.
func NamespaceOfGroup(g string) (string, bool) {
	ns, ok := strings.CutPrefix(g, namespaceGroupPrefix)
	return ns, ok && ns != ""
}
