package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/alcove-io/alcove/engine/meta"
)

// ReloadInterval bounds how often a Source looks at its files for changes:
// at most once per interval, on a handshake.
const ReloadInterval = time.Second

// Source is a component's key pair and the cluster CA, read from a
// directory (tls.crt, tls.key, ca.crt) and re-read when they change, so a
// rotated certificate (a renewed cert-manager Secret, a re-run of alcove
// certs issue) is used by the next handshake without a restart. Existing
// connections keep the certificate they were made with.
type Source struct {
	dir string

	mu      sync.Mutex
	cur     *tlsState
	stamps  []stamp
	checked time.Time
	lastErr error // the last failed reload (the previous state stays in use)
}

type tlsState struct {
	cert *tls.Certificate
	pool *x509.CertPool
	role Role
}

type stamp struct {
	mtime time.Time
	size  int64
}

// Load reads a key pair directory. want, when given, lists the roles this
// process may run as: a worker given a client certificate fails here with
// a message saying so, not later with a refused RPC.
func Load(dir string, want ...Role) (*Source, error) {
	s := &Source{dir: dir}
	st, stamps, err := s.read()
	if err != nil {
		return nil, err
	}
	if len(want) > 0 && st.cert == nil {
		return nil, fmt.Errorf("load certificate from %s: %w: it holds only %s; this component needs a key pair of role %v (alcove certs issue --role ...)", dir, meta.ErrInvalidArgument, CAFile, want)
	}
	if len(want) > 0 && !slices.Contains(want, st.role) {
		return nil, fmt.Errorf("load certificate from %s: %w: it is for role %s; this component needs %v (alcove certs issue --role ...)", dir, meta.ErrInvalidArgument, st.role, want)
	}
	s.cur, s.stamps, s.checked = st, stamps, time.Now()
	return s, nil
}

// Dir is the directory the Source reads.
func (s *Source) Dir() string { return s.dir }

// Role is the role of this process's certificate.
func (s *Source) Role() Role { return s.state().role }

// LastError is the last failed reload, nil when the files in use are current.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Source) files() []string {
	return []string{filepath.Join(s.dir, CertFile), filepath.Join(s.dir, KeyFile), filepath.Join(s.dir, CAFile)}
}

func (s *Source) stat() []stamp {
	out := make([]stamp, 0, 3)
	for _, f := range s.files() {
		fi, err := os.Stat(f) // follows the ..data symlinks of a Secret volume
		if err != nil {
			out = append(out, stamp{})
			continue
		}
		out = append(out, stamp{mtime: fi.ModTime(), size: fi.Size()})
	}
	return out
}

// read loads the files; the stamps are taken first, so a change during the
// read is seen by the next check.
func (s *Source) read() (*tlsState, []stamp, error) {
	stamps := s.stat()
	files := s.files()
	if stamps[0] == (stamp{}) && stamps[1] == (stamp{}) {
		return s.readTrust(stamps, files[2])
	}
	cert, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		// The tls error may quote the file; never the key: LoadX509KeyPair's
		// errors name PEM block types and mismatches only.
		return nil, nil, fmt.Errorf("load key pair from %s: %w", s.dir, err)
	}
	pool, err := loadPool(files[2])
	if err != nil {
		return nil, nil, err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("parse certificate in %s: %w", s.dir, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, nil, fmt.Errorf("certificate in %s is not signed by its ca.crt: %w", s.dir, err)
	}
	role, err := RoleOf(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate in %s: %w", s.dir, err)
	}
	return &tlsState{cert: &cert, pool: pool, role: role}, stamps, nil
}

// readTrust loads a directory that holds only ca.crt: an application pod
// that authenticates with its ServiceAccount token (a master run with
// --kube-auth lets it in without a certificate, as RoleUser) and needs the
// cluster CA only to verify the servers. It presents no certificate.
func (s *Source) readTrust(stamps []stamp, caFile string) (*tlsState, []stamp, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, nil, err
	}
	return &tlsState{pool: pool, role: RoleUser}, stamps, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load cluster CA %s: %w: no PEM certificate", caFile, meta.ErrInvalidArgument)
	}
	return pool, nil
}

// state returns the current key pair, reloading it when the files changed.
// A failed reload (say, tls.crt replaced before tls.key) keeps the previous
// pair and is retried at the next check.
func (s *Source) state() *tlsState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) < ReloadInterval {
		return s.cur
	}
	s.checked = time.Now()
	if slices.Equal(s.stat(), s.stamps) {
		return s.cur
	}
	st, stamps, err := s.read()
	if err != nil {
		s.lastErr = err
		return s.cur
	}
	s.cur, s.stamps, s.lastErr = st, stamps, nil
	return s.cur
}

// ServerConfig requires and verifies client certificates from the cluster
// CA. Roles are checked per RPC by an Authorizer.
func (s *Source) ServerConfig() *tls.Config { return s.serverConfig(tls.RequireAndVerifyClientCert) }

// serverConfig verifies client certificates with auth: required, or (for
// a master that also takes ServiceAccount tokens) verified when given.
func (s *Source) serverConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.state()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*st.cert},
				ClientCAs:    st.pool,
				ClientAuth:   auth,
				NextProtos:   []string{"h2"}, // gRPC enforces ALPN
			}, nil
		},
	}
}

// ClientConfig presents this process's certificate and accepts a server
// whose certificate chains to the cluster CA and carries one of the roles
// in peers (any role when empty). The role, not the host name, identifies
// a server: masters and workers are reached by pod IPs and changing DNS
// names, and only the cluster CA issues alcove:// role URIs.
func (s *Source) ClientConfig(peers ...Role) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified in VerifyConnection against the current
		// CA; Go's built-in check would also demand a matching host name.
		InsecureSkipVerify: true, //nolint:gosec // verified below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := s.state().cert; c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // a CA-only directory: no certificate sent
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyServer(cs, peers)
		},
	}
}

func (s *Source) verifyServer(cs tls.ConnectionState, peers []Role) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.state().pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("server certificate %q: %w", leaf.Subject.CommonName, err)
	}
	role, err := RoleOf(leaf)
	if err != nil {
		return err
	}
	if len(peers) > 0 && !slices.Contains(peers, role) {
		return fmt.Errorf("server certificate %q is for role %s, expected %v", leaf.Subject.CommonName, role, peers)
	}
	return nil
}

// PeerConfigs are the TLS configurations of a link between members of one
// role (the masters' raft transport): the server side requires a client
// certificate of that role, the client side a server certificate of it.
func (s *Source) PeerConfigs(role Role) (server, client *tls.Config) {
	server = s.serverConfig(tls.RequireAndVerifyClientCert)
	inner := server.GetConfigForClient
	server.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := inner(hello)
		if err != nil {
			return nil, err
		}
		c.NextProtos = nil // not gRPC
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("client sent no certificate")
			}
			got, err := RoleOf(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			if got != role {
				return fmt.Errorf("client certificate %q is for role %s, expected %s", cs.PeerCertificates[0].Subject.CommonName, got, role)
			}
			return nil
		}
		return c, nil
	}
	return server, s.ClientConfig(role)
}

// ServerCredentials are gRPC server credentials from ServerConfig.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerConfig())
}

// ClientCredentials are gRPC client credentials from ClientConfig.
func (s *Source) ClientCredentials(peers ...Role) credentials.TransportCredentials {
	return credentials.NewTLS(s.ClientConfig(peers...))
}

// ServerOptions make a gRPC server authenticate callers with the cluster CA
// and apply the Cluster policy, and name the user each call acts for.
// users, when set, verifies ServiceAccount tokens, which also let callers
// without a certificate in (as RoleUser). A nil Source (TLS off) only
// names users.
func ServerOptions(s *Source, users Authenticator) []grpc.ServerOption {
	if s == nil {
		i := Identifier{Users: users}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(i.Unary), grpc.ChainStreamInterceptor(i.Stream)}
	}
	a := Authorizer{Policy: Cluster, Users: users}
	auth := tls.RequireAndVerifyClientCert
	if users != nil {
		auth = tls.VerifyClientCertIfGiven
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.serverConfig(auth))), grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream)}
}

// DialOption is the transport of a gRPC client: mTLS to a server of one of
// the peers roles, or plaintext when s is nil (TLS off).
func DialOption(s *Source, peers ...Role) grpc.DialOption {
	if s == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(s.ClientCredentials(peers...))
}
