package security

import (
	"errors"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

func TestTokens(t *testing.T) {
	s, err := NewSigner(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	kr := NewKeyring()
	kr.Set(s.Keys())
	scope := Scope{FileID: 7, Access: AccessRead, MountID: 3, UfsPath: "/data/a", BlockSize: 64 << 20}
	tok, err := s.Sign(scope)
	if err != nil {
		t.Fatal(err)
	}
	rw, _ := s.Sign(Scope{FileID: 7, Access: AccessRead | AccessWrite, MountID: 3, UfsPath: "/data/a", BlockSize: 64 << 20})
	forged := append([]byte(nil), tok...)
	forged[13+7] = 8 // file 8
	other, _ := NewSigner(time.Minute)
	foreign, _ := other.Sign(scope)
	expired := sign(s.macs[s.keys[0].ID], s.keys[0].ID, time.Now().Add(-time.Second), scope)
	with := func(f func(*Scope)) Scope { c := scope; f(&c); return c }
	for _, tc := range []struct {
		name string
		tok  []byte
		want Scope
		ufs  bool
		err  error
	}{
		{"valid cached read", tok, scope, false, nil},
		{"valid UFS read", tok, scope, true, nil},
		{"read-write token reads", rw, scope, true, nil},
		{"no token", nil, scope, false, meta.ErrUnauthenticated},
		{"truncated", tok[:10], scope, false, meta.ErrUnauthenticated},
		{"file id changed in the token", forged, with(func(s *Scope) { s.FileID = 8 }), false, meta.ErrUnauthenticated},
		{"another master's key", foreign, scope, false, meta.ErrUnauthenticated},
		{"expired", expired, scope, false, meta.ErrUnauthenticated},
		{"another file's token", tok, with(func(s *Scope) { s.FileID = 8 }), false, meta.ErrPermission},
		{"read token used to write", tok, with(func(s *Scope) { s.Access = AccessWrite }), false, meta.ErrPermission},
		{"foreign UFS path", tok, with(func(s *Scope) { s.UfsPath = "/etc/shadow" }), true, meta.ErrPermission},
		{"other mount", tok, with(func(s *Scope) { s.MountID = 1 }), true, meta.ErrPermission},
		{"other block size", tok, with(func(s *Scope) { s.BlockSize = 1 << 20 }), true, meta.ErrPermission},
		{"UFS path not checked on a cached read", tok, with(func(s *Scope) { s.UfsPath = "/x" }), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kr.Verify(tc.tok, tc.want, tc.ufs)
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Verify: %v, want %v", err, tc.err)
			}
		})
	}
	if empty := NewKeyring(); empty.Ready() || !errors.Is(empty.Verify(tok, scope, false), meta.ErrUnauthenticated) {
		t.Fatal("a keyring without keys accepted a token")
	}
}

func TestSignerRotation(t *testing.T) {
	s, err := NewSigner(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Keys()
	if len(first) != 1 {
		t.Fatalf("%d keys", len(first))
	}
	// Two lifetimes later a new key signs; the old one still verifies.
	k, _ := s.current(time.Now().Add(2*time.Minute + time.Second))
	if k.ID == first[0].ID || len(s.Keys()) != 2 {
		t.Fatalf("no rotation: %d keys", len(s.Keys()))
	}
	// Past the old key's expiry it is dropped.
	s.current(time.Now().Add(6 * time.Minute))
	for _, k := range s.Keys() {
		if k.ID == first[0].ID {
			t.Fatal("expired key kept")
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s, _ := NewSigner(time.Minute)
	kr := NewKeyring()
	kr.Set(s.Keys())
	scope := Scope{FileID: 7, Access: AccessRead, MountID: 3, UfsPath: "/data/a", BlockSize: 64 << 20}
	tok, _ := s.Sign(scope)
	b.ReportAllocs()
	for b.Loop() {
		if err := kr.Verify(tok, scope, false); err != nil {
			b.Fatal(err)
		}
	}
}

// Masters sharing a secret sign with the same keys: a worker that holds an
// old leader's keys verifies a new leader's tokens, also across a rotation
// (the next epoch's key is handed out ahead). Another secret's tokens fail.
func TestSharedSecretSigners(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	newSigner := func(secret []byte) *Signer {
		t.Helper()
		s, err := NewSigner(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.UseSecret(secret); err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, next := newSigner(secret), newSigner(secret)
	kr := NewKeyring()
	kr.Set(old.Keys()) // the worker heard only the old leader
	scope := Scope{FileID: 9, Access: AccessRead}
	now := time.Now()
	for _, tc := range []struct {
		name string
		s    *Signer
		at   time.Time
		err  error
	}{
		{"old leader", old, now, nil},
		{"new leader", next, now, nil},
		{"new leader after a rotation", next, now.Add(time.Minute), nil},
		{"another group's secret", newSigner([]byte("another secret, 32 bytes long..!")), now, meta.ErrUnauthenticated},
	} {
		k, err := tc.s.current(tc.at)
		if err != nil {
			t.Fatal(err)
		}
		tc.s.mu.Lock()
		pool := tc.s.macs[k.ID]
		tc.s.mu.Unlock()
		tok := sign(pool, k.ID, tc.at.Add(time.Minute), scope)
		if err := kr.Verify(tok, scope, false); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if err := old.UseSecret([]byte("short")); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Errorf("short secret: %v", err)
	}
}
