package master

import (
	"testing"

	"github.com/alcove-io/alcove/engine/security"
)

func TestPermits(t *testing.T) {
	alice := security.User{Name: "alice", Groups: []string{"staff"}}
	for _, tc := range []struct {
		name         string
		owner, group string
		mode, mask   uint32
		want         bool
	}{
		{"owner reads 0600", "alice", "x", 0o600, permR, true},
		{"owner may not write 0400", "alice", "x", 0o400, permW, false},
		{"group member reads 0640", "bob", "staff", 0o640, permR, true},
		{"group member may not write 0640", "bob", "staff", 0o640, permW, false},
		{"other reads 0644", "bob", "wheel", 0o644, permR, true},
		{"other refused 0640", "bob", "wheel", 0o640, permR, false},
		{"owner bits win over other bits", "alice", "x", 0o047, permR, false},
		{"search needs x", "bob", "wheel", 0o666, permX, false},
		{"write and search on a parent", "bob", "staff", 0o730, permW | permX, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := permits(alice, tc.owner, tc.group, tc.mode, tc.mask); got != tc.want {
				t.Fatalf("permits = %v, want %v", got, tc.want)
			}
		})
	}
}
