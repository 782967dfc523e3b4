package security

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Access is what a block token allows.
type Access uint8

// Access modes (a bit set).
const (
	AccessRead  Access = 1
	AccessWrite Access = 2
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessRead | AccessWrite:
		return "read-write"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// Scope is what a token is for: one file, an access mode, and where the
// file lives in the UFS. A worker reads or writes the UFS only at a
// location a token signed by the master binds, never at one a client chose.
type Scope struct {
	FileID    int64
	Access    Access
	MountID   int64
	UfsPath   string
	BlockSize int64
}

// ufsDigest binds the UFS location and layout into a token.
func (s Scope) ufsDigest() [digestLen]byte {
	h := sha256.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.MountID))
	binary.BigEndian.PutUint64(b[8:], uint64(s.BlockSize))
	h.Write(b[:])
	h.Write([]byte(s.UfsPath))
	var d [digestLen]byte
	copy(d[:], h.Sum(nil))
	return d
}

// Token layout: version | key id | expiry (unix s) | file id | access |
// UFS digest | MAC over everything before it.
const (
	tokenVersion = 1
	digestLen    = 16
	macLen       = 16
	headerLen    = 1 + 4 + 8 + 8 + 1
	// TokenLen is the size of an encoded block token.
	TokenLen = headerLen + digestLen + macLen
)

// Key is a token signing key. Masters create them; workers receive them over
// the authenticated master connection. Secret never leaves those two.
type Key struct {
	ID      uint32
	Secret  []byte
	Expires time.Time // after this, tokens signed with it are refused
}

func newKey(expires time.Time) (Key, error) {
	var id [4]byte
	secret := make([]byte, 32)
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("create token key: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("create token key: %w", err)
	}
	return Key{ID: binary.BigEndian.Uint32(id[:]), Secret: secret, Expires: expires}, nil
}

// Signer issues tokens (the master). Its key rotates every lifetime; a key
// is kept (and handed to workers) for three lifetimes, so every token it
// signed stays verifiable until the token itself expires.
type Signer struct {
	lifetime time.Duration

	mu     sync.Mutex
	keys   []Key // newest last
	macs   map[uint32]*sync.Pool
	secret []byte // set by UseSecret: keys are derived from it
	epoch  int64  // the epoch keys were last derived for
}

// DefaultTokenLifetime is how long a block token is valid. Readers holding
// a file open longer get a fresh token from the master when a worker
// refuses an expired one.
const DefaultTokenLifetime = 10 * time.Minute

// NewSigner returns a signer with a fresh key.
func NewSigner(lifetime time.Duration) (*Signer, error) {
	if lifetime <= 0 {
		lifetime = DefaultTokenLifetime
	}
	s := &Signer{lifetime: lifetime, macs: map[uint32]*sync.Pool{}}
	if _, err := s.current(time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// UseSecret makes the signer derive its keys from secret, which every
// master of an HA group shares through the journal: time is cut into epochs
// of one lifetime, and each epoch's key is HMAC(secret, epoch). A new leader
// therefore signs with the keys the workers already hold from the old one,
// and Keys includes the next epoch's key, so a rotation never signs with a
// key a worker has not received. The masters must agree on the lifetime.
func (s *Signer) UseSecret(secret []byte) error {
	if len(secret) < 16 {
		return fmt.Errorf("%w: block token secret of %d bytes", meta.ErrInvalidArgument, len(secret))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secret = append([]byte(nil), secret...)
	s.keys, s.macs, s.epoch = nil, map[uint32]*sync.Pool{}, 0
	return nil
}

// derivedLocked returns the key of epoch e, valid from e's start for three
// lifetimes (as a rotated key is).
func (s *Signer) derivedLocked(e int64) Key {
	h := hmac.New(sha256.New, s.secret)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(e))
	h.Write([]byte("alcove block token key\x00"))
	h.Write(b[:])
	sum := h.Sum(nil)
	start := time.Unix(0, e*int64(s.lifetime))
	return Key{ID: binary.BigEndian.Uint32(sum[:4]), Secret: sum, Expires: start.Add(3 * s.lifetime)}
}

// currentDerivedLocked keeps the keys of epochs e-2..e+1 and returns e's.
func (s *Signer) currentDerivedLocked(now time.Time) Key {
	e := now.UnixNano() / int64(s.lifetime)
	if e != s.epoch || len(s.keys) == 0 {
		s.keys = s.keys[:0]
		clear(s.macs)
		for i := e - 2; i <= e+1; i++ {
			k := s.derivedLocked(i)
			s.keys = append(s.keys, k)
			s.macs[k.ID] = macPool(k.Secret)
		}
		s.epoch = e
	}
	return s.keys[2]
}

// current returns the key to sign with at now, rotating when it is due.
func (s *Signer) current(now time.Time) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secret != nil {
		return s.currentDerivedLocked(now), nil
	}
	if n := len(s.keys); n > 0 && now.Before(s.keys[n-1].Expires.Add(-2*s.lifetime)) {
		return s.keys[n-1], nil
	}
	k, err := newKey(now.Add(3 * s.lifetime))
	if err != nil {
		return Key{}, err
	}
	kept := s.keys[:0]
	for _, old := range s.keys {
		if now.Before(old.Expires) {
			kept = append(kept, old)
		} else {
			delete(s.macs, old.ID)
		}
	}
	s.keys = append(kept, k)
	s.macs[k.ID] = macPool(k.Secret)
	return k, nil
}

// Keys returns the keys workers need to verify tokens signed so far.
func (s *Signer) Keys() []Key {
	_, _ = s.current(time.Now()) // a failed rotation keeps the previous keys
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Key(nil), s.keys...)
}

// Sign returns a token for scope, valid for the signer's lifetime.
func (s *Signer) Sign(scope Scope) ([]byte, error) {
	now := time.Now()
	k, err := s.current(now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	pool := s.macs[k.ID]
	s.mu.Unlock()
	return sign(pool, k.ID, now.Add(s.lifetime), scope), nil
}

func macPool(secret []byte) *sync.Pool {
	secret = append([]byte(nil), secret...)
	return &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}
}

func sign(pool *sync.Pool, keyID uint32, expires time.Time, s Scope) []byte {
	t := make([]byte, TokenLen)
	t[0] = tokenVersion
	binary.BigEndian.PutUint32(t[1:5], keyID)
	binary.BigEndian.PutUint64(t[5:13], uint64(expires.Unix()))
	binary.BigEndian.PutUint64(t[13:21], uint64(s.FileID))
	t[21] = byte(s.Access)
	d := s.ufsDigest()
	copy(t[headerLen:], d[:])
	copy(t[headerLen+digestLen:], mac(pool, t[:headerLen+digestLen]))
	return t
}

func mac(pool *sync.Pool, msg []byte) []byte {
	h := pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	pool.Put(h)
	return out[:macLen]
}

// Keyring verifies tokens (a worker). It holds the keys the master sent.
type Keyring struct {
	mu   sync.RWMutex
	keys map[uint32]keyEntry
}

type keyEntry struct {
	expires time.Time
	pool    *sync.Pool
}

// NewKeyring returns an empty keyring: it refuses every token until the
// master's keys arrive.
func NewKeyring() *Keyring { return &Keyring{keys: map[uint32]keyEntry{}} }

// Set adds keys and drops expired ones.
func (r *Keyring) Set(keys []Key) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.keys {
		if !now.Before(e.expires) {
			delete(r.keys, id)
		}
	}
	for _, k := range keys {
		if _, ok := r.keys[k.ID]; !ok && now.Before(k.Expires) && len(k.Secret) > 0 {
			r.keys[k.ID] = keyEntry{expires: k.Expires, pool: macPool(k.Secret)}
		}
	}
}

// Ready reports whether the keyring holds a key.
func (r *Keyring) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys) > 0
}

// Verify checks that tok allows want.Access on file want.FileID. With ufs
// true it also checks that the token binds want's UFS location and block
// size (a read-through or a write to the UFS); cached reads pass false.
// Errors wrap meta.ErrUnauthenticated (missing, forged, expired: a client
// gets a fresh token and retries) or meta.ErrPermission (a valid token for
// something else). They never quote the token.
func (r *Keyring) Verify(tok []byte, want Scope, ufs bool) error {
	if len(tok) == 0 {
		return fmt.Errorf("%w: no block token for file %d (the master hands them out with file metadata)", meta.ErrUnauthenticated, want.FileID)
	}
	if len(tok) != TokenLen || tok[0] != tokenVersion {
		return fmt.Errorf("%w: malformed block token for file %d", meta.ErrUnauthenticated, want.FileID)
	}
	id := binary.BigEndian.Uint32(tok[1:5])
	r.mu.RLock()
	e, ok := r.keys[id]
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: block token for file %d is signed with a key this worker does not know (expired, or from a master it has not heard from yet)", meta.ErrUnauthenticated, want.FileID)
	}
	if !hmac.Equal(mac(e.pool, tok[:headerLen+digestLen]), tok[headerLen+digestLen:]) {
		return fmt.Errorf("%w: block token for file %d has a bad signature", meta.ErrUnauthenticated, want.FileID)
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(tok[5:13])), 0); !time.Now().Before(exp) {
		return fmt.Errorf("%w: block token for file %d expired at %s", meta.ErrUnauthenticated, want.FileID, exp.UTC().Format(time.RFC3339))
	}
	if got := int64(binary.BigEndian.Uint64(tok[13:21])); got != want.FileID {
		return fmt.Errorf("%w: block token is for file %d, not file %d", meta.ErrPermission, got, want.FileID)
	}
	if got := Access(tok[21]); got&want.Access != want.Access {
		return fmt.Errorf("%w: block token for file %d allows %s, not %s", meta.ErrPermission, want.FileID, got, want.Access)
	}
	if ufs {
		d := want.ufsDigest()
		if !hmac.Equal(d[:], tok[headerLen:headerLen+digestLen]) {
			return fmt.Errorf("%w: the UFS location or block size of file %d is not the one the master signed", meta.ErrPermission, want.FileID)
		}
	}
	return nil
}

// KeysToProto converts keys for a RegisterWorker or Heartbeat answer.
func KeysToProto(keys []Key) []*apiv1.BlockTokenKey {
	out := make([]*apiv1.BlockTokenKey, len(keys))
	for i, k := range keys {
		out[i] = &apiv1.BlockTokenKey{Id: k.ID, Secret: k.Secret, ExpiresUnixMs: k.Expires.UnixMilli()}
	}
	return out
}

// KeysFromProto converts keys a worker received.
func KeysFromProto(pk []*apiv1.BlockTokenKey) []Key {
	out := make([]Key, len(pk))
	for i, k := range pk {
		out[i] = Key{ID: k.GetId(), Secret: k.GetSecret(), Expires: time.UnixMilli(k.GetExpiresUnixMs())}
	}
	return out
}

// ScopeOf is the scope of a token for a file's metadata.
func ScopeOf(fi *apiv1.FileInfo, a Access) Scope {
	return Scope{FileID: fi.GetFileId(), Access: a, MountID: fi.GetMountId(), UfsPath: fi.GetUfsPath(), BlockSize: fi.GetBlockSizeBytes()}
}
