package security

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

// File names of a key pair directory: the layout of a cert-manager
// Certificate's Secret (kubernetes.io/tls plus ca.crt), so a Secret mounted
// as a volume is a valid --tls-dir. A CA directory holds ca.crt and ca.key.
const (
	CertFile   = "tls.crt"
	KeyFile    = "tls.key"
	CAFile     = "ca.crt"
	CAKeyFile  = "ca.key"
	caValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity of an issued certificate.
	DefaultValidity = 365 * 24 * time.Hour
)

// InitCA creates a cluster CA in dir (ca.crt, ca.key mode 0600). It refuses
// to overwrite an existing CA: every certificate issued from it would stop
// being trusted.
func InitCA(dir, commonName string) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("create CA in %s: %w: %s exists (remove it to start a new cluster CA)", dir, meta.ErrAlreadyExists, CAKeyFile)
	}
	ca, err := NewCA(commonName)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create CA dir %s: %w", dir, err)
	}
	if err := writeAtomic(filepath.Join(dir, CAKeyFile), ca.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, CAFile), ca.CertPEM, 0o644)
}

// CA is a cluster CA in memory: what InitCA writes to a directory and
// `alcove certs kube-secrets` keeps in a Secret.
type CA struct {
	CertPEM, KeyPEM []byte
	cert            *x509.Certificate
	key             *ecdsa.PrivateKey
}

// NewCA makes a cluster CA (common name "alcove cluster CA" when empty).
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA key: %w", err)
	}
	if commonName == "" {
		commonName = "alcove cluster CA"
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"alcove"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
}

// ParseCA reads a CA from its certificate and key in PEM. Errors never
// quote the key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("read CA certificate %q: %w: not a CA", cert.Subject.CommonName, meta.ErrInvalidArgument)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("read CA key: %w: no PEM key", meta.ErrInvalidArgument)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, errors.New("parse CA key: not an EC private key") // never echo key bytes
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("read CA %q: %w: the key does not match the certificate", cert.Subject.CommonName, meta.ErrInvalidArgument)
	}
	return &CA{CertPEM: certPEM, KeyPEM: keyPEM, cert: cert, key: key}, nil
}

// NotAfter is when the CA certificate expires.
func (ca *CA) NotAfter() time.Time { return ca.cert.NotAfter }

// IssueRequest describes a component certificate.
type IssueRequest struct {
	Role     Role
	Name     string // subject common name: the component's name (host, pod, user)
	DNSNames []string
	IPs      []net.IP
	Validity time.Duration // default DefaultValidity
}

// Pair is a component's certificate, its key and the CA certificate in
// PEM: the three files of a key pair directory (tls.crt, tls.key, ca.crt).
type Pair struct {
	Cert, Key, CA []byte
}

// Issue signs a certificate for req with the CA in caDir and writes
// tls.crt, tls.key (0600) and ca.crt into outDir.
func Issue(caDir, outDir string, req IssueRequest) error {
	ca, err := loadCA(caDir)
	if err != nil {
		return err
	}
	p, err := ca.Issue(req)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("create certificate dir %s: %w", outDir, err)
	}
	// Key first, certificate last: a reloader that sees the new tls.crt
	// finds its key already in place (it also retries a mismatched pair).
	if err := writeAtomic(filepath.Join(outDir, KeyFile), p.Key, 0o600); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(outDir, CAFile), p.CA, 0o644); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(outDir, CertFile), p.Cert, 0o644)
}

// Issue signs a certificate for req. Each certificate is good for both
// ends of a connection (server and client auth): a worker serves clients
// and calls the master.
func (ca *CA) Issue(req IssueRequest) (Pair, error) {
	if !req.Role.Valid() {
		return Pair{}, fmt.Errorf("issue certificate: %w: role %q (use one of %v)", meta.ErrInvalidArgument, req.Role, Roles)
	}
	if req.Name == "" {
		return Pair{}, fmt.Errorf("issue certificate: %w: a name is needed", meta.ErrInvalidArgument)
	}
	if req.Validity <= 0 {
		req.Validity = DefaultValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("create key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{"alcove"}, OrganizationalUnit: []string{string(req.Role)}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(req.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
		URIs:         []*url.URL{req.Role.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("sign certificate for %s: %w", req.Name, err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: keyPEM, CA: ca.CertPEM}, nil
}

// Check tells why p cannot serve as the certificate req asks for, or nil
// when it can: a pair that does not parse, whose key does not match, that
// is not signed by ca (or carries another CA), whose role differs, that
// lacks one of req's DNS names or IPs, or that expires within renewBefore.
// Reasons never quote the key.
func (ca *CA) Check(p Pair, req IssueRequest, renewBefore time.Duration) error {
	if !bytes.Equal(p.CA, ca.CertPEM) {
		return errors.New("its ca.crt is not the cluster CA")
	}
	pair, err := tls.X509KeyPair(p.Cert, p.Key)
	if err != nil {
		return errors.New("tls.crt and tls.key are not a matching key pair")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse tls.crt: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("not signed by the cluster CA: %w", err)
	}
	if role, err := RoleOf(leaf); err != nil || role != req.Role {
		return fmt.Errorf("its role is %q, want %s", role, req.Role)
	}
	for _, n := range req.DNSNames {
		if !slices.Contains(leaf.DNSNames, n) {
			return fmt.Errorf("it lacks the DNS name %s", n)
		}
	}
	for _, ip := range req.IPs {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return fmt.Errorf("it lacks the IP address %s", ip)
		}
	}
	if left := time.Until(leaf.NotAfter); left < renewBefore {
		return fmt.Errorf("it expires at %s, within %v", leaf.NotAfter.UTC().Format(time.RFC3339), renewBefore)
	}
	return nil
}

func loadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w (create one with alcove certs init)", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	return ca, nil
}

func parseCertPEM(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no PEM certificate", meta.ErrInvalidArgument)
	}
	return x509.ParseCertificate(block.Bytes)
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("read random serial: %v", err)) // crypto/rand does not fail on Linux
	}
	return n
}

// writeAtomic writes a file by temp file, fsync and rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// EnsureLocal makes a throwaway cluster CA in dir/ca and one certificate
// per role in dir/<role> (alcove local: zero set-up, TLS still on). Files
// already there are kept, so a restarted alcove local and the CLI pointed
// at dir/admin keep trusting each other.
func EnsureLocal(dir, host string) error {
	caDir := filepath.Join(dir, "ca")
	if _, err := os.Stat(filepath.Join(caDir, CAKeyFile)); errors.Is(err, os.ErrNotExist) {
		if err := InitCA(caDir, "alcove local CA"); err != nil {
			return err
		}
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	}
	for _, r := range Roles {
		out := filepath.Join(dir, string(r))
		if _, err := os.Stat(filepath.Join(out, CertFile)); err == nil {
			continue
		}
		if err := Issue(caDir, out, IssueRequest{Role: r, Name: "local-" + string(r), DNSNames: []string{"localhost"}, IPs: ips}); err != nil {
			return err
		}
	}
	return nil
}
