package security

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// pki is a CA and certificates issued from it under one temp dir.
type pki struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir()}
	if err := InitCA(filepath.Join(p.dir, "ca"), ""); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) issue(role Role, name string) string {
	p.t.Helper()
	out := filepath.Join(p.dir, name)
	if err := Issue(filepath.Join(p.dir, "ca"), out, IssueRequest{Role: role, Name: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *pki) load(dir string) *Source {
	p.t.Helper()
	s, err := Load(dir)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func TestCertsLayoutAndRole(t *testing.T) {
	p := newPKI(t)
	if err := InitCA(filepath.Join(p.dir, "ca"), ""); !errors.Is(err, meta.ErrAlreadyExists) {
		t.Fatalf("second init: %v, want AlreadyExists", err)
	}
	dir := p.issue(RoleWorker, "w1")
	for name, mode := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600, CAFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	if fi, _ := os.Stat(filepath.Join(p.dir, "ca", CAKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v", fi.Mode().Perm())
	}
	if r := p.load(dir).Role(); r != RoleWorker {
		t.Fatalf("role %s", r)
	}
	if _, err := Load(dir, RoleMaster); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Fatalf("worker cert loaded as master: %v", err)
	}
	if err := Issue(filepath.Join(p.dir, "ca"), filepath.Join(p.dir, "x"), IssueRequest{Role: "root", Name: "x"}); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Fatalf("unknown role issued: %v", err)
	}
	// A certificate from another CA does not load against this ca.crt.
	other := newPKI(t).issue(RoleMaster, "m")
	if err := os.Rename(filepath.Join(p.dir, "ca", CAFile), filepath.Join(other, CAFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(other); err == nil || !strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("foreign certificate loaded: %v", err)
	}
}

// fakeBlockMaster answers every BlockMaster and FileSystemMaster call it
// implements with success: a stand-in for the real services, to test the
// policy layer alone (the real master's use of it is tested in test/integration).
type fakeBlockMaster struct {
	apiv1.UnimplementedBlockMasterServer
	apiv1.UnimplementedFileSystemMasterServer
}

func (fakeBlockMaster) PersistDone(ctx context.Context, _ *apiv1.PersistDoneRequest) (*apiv1.PersistDoneResponse, error) {
	if p, ok := PeerFrom(ctx); !ok || p.Role != RoleWorker {
		return nil, status.Error(codes.Internal, "handler ran without a worker peer")
	}
	return &apiv1.PersistDoneResponse{}, nil
}

func (fakeBlockMaster) GetStatus(context.Context, *apiv1.GetStatusRequest) (*apiv1.GetStatusResponse, error) {
	return &apiv1.GetStatusResponse{}, nil
}

func serve(t *testing.T, src *Source) string { t.Helper(); return serveUsers(t, src, nil) }

// serveUsers serves the fake with users verifying bearer tokens (a master
// run with --kube-auth).
func serveUsers(t *testing.T, src *Source, users Authenticator) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(src, users)...)
	apiv1.RegisterBlockMasterServer(srv, fakeBlockMaster{})
	apiv1.RegisterFileSystemMasterServer(srv, fakeBlockMaster{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func call(t *testing.T, addr string, opt grpc.DialOption, method string) codes.Code {
	t.Helper()
	return callToken(t, addr, opt, method, "")
}

// callToken is call with a bearer token ("" sends none).
func callToken(t *testing.T, addr string, opt grpc.DialOption, method, token string) codes.Code {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if token != "" {
		ctx = OutgoingToken(ctx, token)
	}
	switch method {
	case "PersistDone":
		_, err = apiv1.NewBlockMasterClient(cc).PersistDone(ctx, &apiv1.PersistDoneRequest{})
	case "GetStatus":
		_, err = apiv1.NewFileSystemMasterClient(cc).GetStatus(ctx, &apiv1.GetStatusRequest{})
	}
	return status.Code(err)
}

func TestMTLSRoles(t *testing.T) {
	p := newPKI(t)
	master := p.load(p.issue(RoleMaster, "master"))
	addr := serve(t, master)
	worker := p.load(p.issue(RoleWorker, "worker"))
	client := p.load(p.issue(RoleClient, "client"))
	foreign := newPKI(t)
	stranger := foreign.load(foreign.issue(RoleWorker, "stranger"))
	for _, tc := range []struct {
		name   string
		opt    grpc.DialOption
		method string
		want   codes.Code
	}{
		{"worker reports a persist", DialOption(worker, RoleMaster), "PersistDone", codes.OK},
		{"client poses as a worker", DialOption(client, RoleMaster), "PersistDone", codes.PermissionDenied},
		{"client reads metadata", DialOption(client, RoleMaster), "GetStatus", codes.OK},
		{"no certificate", DialOption(nil), "GetStatus", codes.Unavailable},
		{"certificate of another CA", DialOption(stranger), "PersistDone", codes.Unavailable},
		{"server is not of the expected role", DialOption(client, RoleWorker), "GetStatus", codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(t, addr, tc.opt, tc.method); got != tc.want {
				t.Fatalf("%s: code %v, want %v", tc.method, got, tc.want)
			}
		})
	}
}

// TestCAOnly: a directory holding only ca.crt (what an application pod is
// given) verifies servers and presents no certificate: a master that takes
// ServiceAccount tokens lets it in as a user with a token (and only then),
// a server that requires certificates refuses it, and no daemon loads it.
func TestCAOnly(t *testing.T) {
	p := newPKI(t)
	dir := filepath.Join(p.dir, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(p.dir, "ca", CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAFile), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	app := p.load(dir)
	if r := app.Role(); r != RoleUser {
		t.Fatalf("role %s, want %s", r, RoleUser)
	}
	if _, err := Load(dir, RoleWorker); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Fatalf("a worker loaded a CA-only directory: %v", err)
	}
	master := p.load(p.issue(RoleMaster, "master"))
	kubeAuth := serveUsers(t, master, fakeAuthn{})
	certsOnly := serve(t, master)
	foreign := newPKI(t)
	for _, tc := range []struct {
		name, addr, method, token string
		opt                       grpc.DialOption
		want                      codes.Code
	}{
		{"token reads metadata", kubeAuth, "GetStatus", "good", DialOption(app, RoleMaster), codes.OK},
		{"token poses as a worker", kubeAuth, "PersistDone", "good", DialOption(app, RoleMaster), codes.PermissionDenied},
		{"no token", kubeAuth, "GetStatus", "", DialOption(app, RoleMaster), codes.Unauthenticated},
		{"bad token", kubeAuth, "GetStatus", "bad", DialOption(app, RoleMaster), codes.Unauthenticated},
		{"server requires certificates", certsOnly, "GetStatus", "good", DialOption(app, RoleMaster), codes.Unavailable},
		{"master of another CA", serveUsers(t, foreign.load(foreign.issue(RoleMaster, "m")), fakeAuthn{}), "GetStatus", "good", DialOption(app, RoleMaster), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callToken(t, tc.addr, tc.opt, tc.method, tc.token); got != tc.want {
				t.Fatalf("%s: code %v, want %v", tc.method, got, tc.want)
			}
		})
	}
}

// TestReload: a certificate re-issued into the same directory (a new role
// here, to see it) is used by the next connection, without a restart.
func TestReload(t *testing.T) {
	p := newPKI(t)
	addr := serve(t, p.load(p.issue(RoleMaster, "master")))
	dir := p.issue(RoleClient, "rotating")
	src := p.load(dir)
	if got := call(t, addr, DialOption(src, RoleMaster), "PersistDone"); got != codes.PermissionDenied {
		t.Fatalf("client cert: %v", got)
	}
	p.issue(RoleWorker, "rotating")
	deadline := time.Now().Add(5 * time.Second)
	for src.Role() != RoleWorker {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded; last error %v", src.LastError())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := call(t, addr, DialOption(src, RoleMaster), "PersistDone"); got != codes.OK {
		t.Fatalf("after rotation: %v", got)
	}
	// A broken file keeps the last good pair.
	if err := os.WriteFile(filepath.Join(dir, CertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ReloadInterval + 100*time.Millisecond)
	if src.Role() != RoleWorker || src.LastError() == nil {
		t.Fatalf("broken file: role %s, last error %v", src.Role(), src.LastError())
	}
}
