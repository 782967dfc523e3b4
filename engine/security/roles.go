package security

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Role is what a component is allowed to be. It is carried in the
// certificate as the URI SAN alcove://role/<role> (and, for people reading
// it with openssl, as the subject's OU); only the URI SAN counts.
type Role string

// Roles.
const (
	RoleMaster Role = "master"
	RoleWorker Role = "worker"
	RoleJob    Role = "job"    // job master and job workers
	RoleNode   Role = "node"   // node agents: CSI driver, FUSE daemons, scheduler extender
	RoleClient Role = "client" // applications and the CLI
	RoleAdmin  Role = "admin"  // operators: a client that may also run admin RPCs
)

// Roles lists every role.
var Roles = []Role{RoleMaster, RoleWorker, RoleJob, RoleNode, RoleClient, RoleAdmin}

// RoleURIScheme and roleURIHost spell the role URI alcove://role/<role>.
const (
	RoleURIScheme = "alcove"
	roleURIHost   = "role"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// URI is r's URI SAN.
func (r Role) URI() *url.URL {
	return &url.URL{Scheme: RoleURIScheme, Host: roleURIHost, Path: "/" + string(r)}
}

// RoleOf reads the role from a certificate's URI SANs. A certificate with
// no role URI, an unknown one, or two different ones has no role.
func RoleOf(cert *x509.Certificate) (Role, error) {
	var found Role
	for _, u := range cert.URIs {
		if u.Scheme != RoleURIScheme || u.Host != roleURIHost {
			continue
		}
		r := Role(u.Path[min(1, len(u.Path)):])
		if !r.Valid() || (found != "" && found != r) {
			return "", fmt.Errorf("certificate %q: %w: role URI %s", cert.Subject.CommonName, meta.ErrPermission, u)
		}
		found = r
	}
	if found == "" {
		return "", fmt.Errorf("certificate %q: %w: no alcove://role/ URI", cert.Subject.CommonName, meta.ErrPermission)
	}
	return found, nil
}

// Peer is an authenticated caller.
type Peer struct {
	Role Role
	Name string // certificate common name
}

type peerKey struct{}

// PeerFrom returns the caller that the Authorizer interceptor put in ctx.
// ok is false without TLS (insecure mode) or outside a gRPC call.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// peerOf derives the caller from the verified TLS state of the connection.
func peerOf(ctx context.Context) (Peer, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, fmt.Errorf("%w: no peer", meta.ErrUnauthenticated)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Peer{}, errNoCert
	}
	leaf := ti.State.VerifiedChains[0][0]
	r, err := RoleOf(leaf)
	if err != nil {
		return Peer{}, err
	}
	return Peer{Role: r, Name: leaf.Subject.CommonName}, nil
}

// errNoCert: the connection presented no certificate.
var errNoCert = fmt.Errorf("%w: the connection carries no verified client certificate", meta.ErrUnauthenticated)

// Policy says which roles may call a method (full gRPC method name). A
// method not listed is open to every authenticated role.
type Policy map[string][]Role

// Cluster is the policy of every Alcove gRPC server: the one place that says
// which component may call what. Data RPCs are open to every role here; they
// are authorized per request by block tokens.
var Cluster = Policy{
	// Only workers report blocks and persists: a forged PersistDone marks
	// unpersisted data persisted, after which free destroys it.
	apiv1.BlockMaster_RegisterWorker_FullMethodName: {RoleWorker},
	apiv1.BlockMaster_Heartbeat_FullMethodName:      {RoleWorker},
	apiv1.BlockMaster_CommitBlock_FullMethodName:    {RoleWorker},
	apiv1.BlockMaster_PersistDone_FullMethodName:    {RoleWorker},
	// Mounts with their UFS credentials in clear: only workers read and
	// write the UFS for others (clients get GetMountTable, redacted).
	apiv1.BlockMaster_GetMountConfig_FullMethodName: {RoleWorker},
	// Admin operations.
	apiv1.MetaMaster_Checkpoint_FullMethodName: {RoleAdmin, RoleMaster},
	// The journal quorum (alcove fsadmin journal quorum ...): its members'
	// addresses to operators, changes to operators only. GetMasterInfo
	// stays open: every component finds the leader with it.
	apiv1.MetaMaster_GetQuorumInfo_FullMethodName:      {RoleAdmin, RoleMaster},
	apiv1.MetaMaster_AddQuorumMember_FullMethodName:    {RoleAdmin},
	apiv1.MetaMaster_RemoveQuorumMember_FullMethodName: {RoleAdmin},
	apiv1.MetaMaster_TransferLeadership_FullMethodName: {RoleAdmin},
	// The mount table: operators, and the CSI driver (which checks a
	// StorageClass's ufs against its --allowed-ufs before mounting).
	apiv1.FileSystemMaster_Mount_FullMethodName:   {RoleAdmin, RoleNode},
	apiv1.FileSystemMaster_Unmount_FullMethodName: {RoleAdmin, RoleNode},
	// Worker to worker.
	apiv1.BlockWorker_ReplicateBlock_FullMethodName: {RoleWorker},
	// Job tier membership.
	apiv1.JobMaster_RegisterJobWorker_FullMethodName:  {RoleJob},
	apiv1.JobMaster_JobWorkerHeartbeat_FullMethodName: {RoleJob},
}

// Allow checks that p may call method.
func (pol Policy) Allow(method string, p Peer) error {
	roles, ok := pol[method]
	if !ok || slices.Contains(roles, p.Role) {
		return nil
	}
	return fmt.Errorf("%s: %w: role %s (certificate %q) may not call it; allowed: %v", method, meta.ErrPermission, p.Role, p.Name, roles)
}

// Authorizer is a pair of gRPC server interceptors that authenticate the
// caller from its certificate and apply a Policy, and put the user the
// call acts for (identity.go) into the context. Install it only on a
// server with TLS credentials that verify client certificates. With Users
// set, a caller without a certificate gets in with a verified bearer token,
// as RoleUser.
type Authorizer struct {
	Policy Policy
	Users  Authenticator
}

// Unary is a grpc.UnaryServerInterceptor.
func (a Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return h(ctx, req)
}

// Stream is a grpc.StreamServerInterceptor.
func (a Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.check(ss.Context(), info.FullMethod)
	if err != nil {
		return meta.ToStatus(err)
	}
	return h(srv, &peerStream{ServerStream: ss, ctx: ctx})
}

func (a Authorizer) check(ctx context.Context, method string) (context.Context, error) {
	p, err := peerOf(ctx)
	certless := errors.Is(err, errNoCert)
	if err != nil && !(certless && a.Users != nil) {
		return ctx, fmt.Errorf("%s: %w", method, err)
	}
	// Asserted users are believed from components and operators, which act
	// for others (a FUSE daemon for a pod's process, the CLI of alcove local
	// for its OS user); a client certificate is the application it names.
	u, named, err := Identify(ctx, a.Users, !certless && p.Role != RoleClient)
	if err != nil {
		return ctx, fmt.Errorf("%s: %w", method, err)
	}
	if certless {
		if !named {
			return ctx, fmt.Errorf("%s: %w: no client certificate and no ServiceAccount token", method, meta.ErrUnauthenticated)
		}
		p = Peer{Role: RoleUser, Name: u.Name}
	}
	if err := a.Policy.Allow(method, p); err != nil {
		return ctx, err
	}
	ctx = context.WithValue(ctx, peerKey{}, p)
	if named {
		ctx = WithUser(ctx, u)
	}
	return ctx, nil
}

type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *peerStream) Context() context.Context { return s.ctx }
