package security

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

// Volume tokens confine the FUSE daemon of one volume to that volume. The
// CSI node plugin (role node) asks the master for one per staged volume
// and hands it to the daemon with the CA alone, so the daemon holds no
// component certificate: with the token it reaches the master as a user
// scoped to the volume's directory (every path it names must be inside,
// its orphan sessions are its own) and, like any certificate-less caller,
// workers' data RPCs with the block tokens the master gives it. A scoped
// user's POSIX permissions are not checked by name: the kernel checks
// them by number on the mount (default_permissions), as for the node
// agent the daemon was before.
//
// A token is VolumeTokenPrefix, then base64url(version, expiry, path),
// ".", base64url(HMAC-SHA256 of that under a key derived from the
// cluster's token secret): every master of an HA group verifies it, and it
// survives restarts and leader changes. It is not revocable before its
// expiry; the node plugin re-issues it well before.

// VolumeTokenPrefix starts every volume token (ServiceAccount tokens, JWTs,
// never do).
const VolumeTokenPrefix = "alcove-volume."

// VolumeTokenLifetime is how long a volume token is valid; the node plugin
// renews it after VolumeTokenRenewAfter, so a plugin may be away almost a
// day without its daemons losing the master.
const (
	VolumeTokenLifetime   = 24 * time.Hour
	VolumeTokenRenewAfter = time.Hour
)

// VolumeUser is the user name of a volume token's holder.
const VolumeUser = "system:alcove:volume"

const volumeTokenVersion = 1

// VolumeTokens signs and verifies volume tokens with a key derived from
// the cluster's token secret, which secret returns (nil while the
// namespace has none yet).
type VolumeTokens struct {
	secret func() ([]byte, error)
	mu     sync.Mutex
	key    []byte // derived once the secret exists
}

// NewVolumeTokens returns a signer and verifier over the cluster secret.
func NewVolumeTokens(secret func() ([]byte, error)) *VolumeTokens {
	return &VolumeTokens{secret: secret}
}

func (v *VolumeTokens) keyOf() ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.key != nil {
		return v.key, nil
	}
	s, err := v.secret()
	if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("%w: the cluster has no token secret yet", meta.ErrUnavailable)
	}
	h := hmac.New(sha256.New, s)
	h.Write([]byte("alcove volume token key\x00"))
	v.key = h.Sum(nil)
	return v.key, nil
}

// Sign returns a token for the directory p (a clean path, not /), valid
// until expires.
func (v *VolumeTokens) Sign(p string, expires time.Time) (string, error) {
	if c, err := meta.CleanPath(p); err != nil || c != p || p == "/" {
		return "", fmt.Errorf("%w: volume token for %q: want a clean path below /", meta.ErrInvalidArgument, p)
	}
	key, err := v.keyOf()
	if err != nil {
		return "", err
	}
	payload := make([]byte, 9, 9+len(p))
	payload[0] = volumeTokenVersion
	binary.BigEndian.PutUint64(payload[1:9], uint64(expires.Unix()))
	payload = append(payload, p...)
	enc := base64.RawURLEncoding
	return VolumeTokenPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(volumeMAC(key, payload)), nil
}

// Authenticate implements Authenticator for volume tokens: the user is
// VolumeUser scoped to the token's directory. Errors never quote the token.
func (v *VolumeTokens) Authenticate(_ context.Context, tok string) (User, error) {
	bad := fmt.Errorf("%w: invalid volume token", meta.ErrUnauthenticated)
	body, ok := strings.CutPrefix(tok, VolumeTokenPrefix)
	if !ok {
		return User{}, bad
	}
	p64, m64, ok := strings.Cut(body, ".")
	if !ok {
		return User{}, bad
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	sum, err2 := enc.DecodeString(m64)
	if err1 != nil || err2 != nil || len(payload) < 10 || payload[0] != volumeTokenVersion {
		return User{}, bad
	}
	key, err := v.keyOf()
	if err != nil {
		return User{}, err
	}
	if !hmac.Equal(sum, volumeMAC(key, payload)) {
		return User{}, bad
	}
	if time.Now().After(time.Unix(int64(binary.BigEndian.Uint64(payload[1:9])), 0)) {
		return User{}, fmt.Errorf("%w: the volume token expired (the CSI node plugin renews it; is it running?)", meta.ErrUnauthenticated)
	}
	return User{Name: VolumeUser, Scope: string(payload[9:]), Verified: true}, nil
}

func volumeMAC(key, payload []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(payload)
	return h.Sum(nil)
}

// IsVolumeToken reports whether tok is a volume token (by its prefix).
func IsVolumeToken(tok string) bool { return strings.HasPrefix(tok, VolumeTokenPrefix) }

// Tokens is an Authenticator that sends volume tokens to Volumes and every
// other token to Kube (nil: no ServiceAccount tokens accepted).
type Tokens struct {
	Volumes *VolumeTokens
	Kube    Authenticator
}

// Authenticate implements Authenticator.
func (u Tokens) Authenticate(ctx context.Context, tok string) (User, error) {
	if IsVolumeToken(tok) && u.Volumes != nil {
		return u.Volumes.Authenticate(ctx, tok)
	}
	if u.Kube == nil {
		return User{}, fmt.Errorf("%w: this master does not accept ServiceAccount tokens (no Kubernetes API configured)", meta.ErrUnauthenticated)
	}
	return u.Kube.Authenticate(ctx, tok)
}

var _ Authenticator = Tokens{}
