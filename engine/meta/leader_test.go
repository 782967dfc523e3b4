package meta

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNotLeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		leader string
	}{
		{"named", &NotLeaderError{Leader: "10.0.0.2:19998", Msg: "create: standby"}, "10.0.0.2:19998"},
		{"wrapped", fmt.Errorf("call: %w", &NotLeaderError{Leader: "m-1:19998", Msg: "standby"}), "m-1:19998"},
		{"no leader", &NotLeaderError{Msg: "no leader elected"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ToStatus(tc.err)
			if status.Code(st) != codes.Unavailable {
				t.Fatalf("code %v", status.Code(st))
			}
			// Across the wire: only the status proto survives.
			wire := status.FromProto(status.Convert(st).Proto()).Err()
			back := FromStatus(wire)
			var nl *NotLeaderError
			if !errors.As(back, &nl) || nl.Leader != tc.leader {
				t.Fatalf("FromStatus = %#v, want leader %q", back, tc.leader)
			}
			if !errors.Is(back, ErrNotLeader) || Errno(back) == 0 {
				t.Fatalf("sentinel lost: %v", back)
			}
		})
	}
	// A plain ErrNotLeader still maps to Unavailable, without a leader.
	back := FromStatus(ToStatus(fmt.Errorf("x: %w", ErrNotLeader)))
	var nl *NotLeaderError
	if !errors.Is(back, ErrNotLeader) || errors.As(back, &nl) {
		t.Fatalf("plain not-leader: %#v", back)
	}
}

func TestParseRequestID(t *testing.T) {
	for _, tc := range []struct {
		in  string
		seq uint64
		ok  bool
	}{
		{FormatRequestID([]byte{1, 2, 3}, 42), 42, true},
		{"0a0b-0", 0, true},
		{"", 0, false},
		{"zz-1", 0, false},
		{"0a0b", 0, false},
		{"0a0b-x", 0, false},
		{"-5", 0, false},
	} {
		id, err := ParseRequestID(tc.in)
		if (err == nil) != tc.ok || (tc.ok && id.GetSeq() != tc.seq) {
			t.Errorf("ParseRequestID(%q) = %v, %v", tc.in, id, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseRequestID(%q): %v is not ErrInvalidArgument", tc.in, err)
		}
	}
}
