package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("create CA key: %w", err)
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
		return fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create CA dir %s: %w", dir, err)
	}
	if err := writeAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, CAFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// IssueRequest describes a component certificate.
type IssueRequest struct {
	Role     Role
	Name     string // subject common name: the component's name (host, pod, user)
	DNSNames []string
	IPs      []net.IP
	Validity time.Duration // default DefaultValidity
}

// Issue signs a certificate for req with the CA in caDir and writes
// tls.crt, tls.key (0600) and ca.crt into outDir. Each certificate is good
// for both ends of a connection (server and client auth): a worker serves
// clients and calls the master.
func Issue(caDir, outDir string, req IssueRequest) error {
	if !req.Role.Valid() {
		return fmt.Errorf("issue certificate: %w: role %q (use one of %v)", meta.ErrInvalidArgument, req.Role, Roles)
	}
	if req.Name == "" {
		return fmt.Errorf("issue certificate: %w: a name is needed", meta.ErrInvalidArgument)
	}
	if req.Validity <= 0 {
		req.Validity = DefaultValidity
	}
	caCert, caKey, caPEM, err := loadCA(caDir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign certificate for %s: %w", req.Name, err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("create certificate dir %s: %w", outDir, err)
	}
	// Key first, certificate last: a reloader that sees the new tls.crt
	// finds its key already in place (it also retries a mismatched pair).
	if err := writeAtomic(filepath.Join(outDir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(outDir, CAFile), caPEM, 0o644); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(outDir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read CA certificate: %w (create one with alcove certs init)", err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return nil, nil, nil, fmt.Errorf("read CA certificate %s: %w: no PEM certificate", filepath.Join(dir, CAFile), meta.ErrInvalidArgument)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read CA key: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, nil, fmt.Errorf("read CA key in %s: %w: no PEM key", dir, meta.ErrInvalidArgument)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, nil, errors.New("parse CA key: not an EC private key") // never echo key bytes
	}
	return cert, key, caPEM, nil
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
