package meta

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// NotLeader status details: a standby master refuses a call with
// codes.Unavailable carrying an errdetails.ErrorInfo whose reason is
// NotLeaderReason and whose metadata names the leader's client RPC address
// under NotLeaderAddressKey ("" or absent while no leader is known).
const (
	NotLeaderReason     = "NOT_LEADER"
	NotLeaderDomain     = "alcove.io"
	NotLeaderAddressKey = "leader_address"
)

// NotLeaderError is ErrNotLeader with the leader's client RPC address, so
// that a client can go straight to the leader.
type NotLeaderError struct {
	Leader string // host:port of the leader's RPC service; "" when unknown
	Msg    string
}

func (e *NotLeaderError) Error() string { return e.Msg }
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// GRPCStatus renders the error as an Unavailable status with the leader in
// its details; FromStatus turns it back into a *NotLeaderError.
func (e *NotLeaderError) GRPCStatus() *status.Status {
	st := status.New(codes.Unavailable, e.Msg+reasonSep+ErrNotLeader.Error())
	withDetails, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: NotLeaderReason, Domain: NotLeaderDomain,
		Metadata: map[string]string{NotLeaderAddressKey: e.Leader},
	})
	if err != nil {
		return st
	}
	return withDetails
}

// notLeaderFromStatus returns the NotLeaderError a status carries, if any.
func notLeaderFromStatus(st *status.Status, msg string) (*NotLeaderError, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == NotLeaderReason && info.GetDomain() == NotLeaderDomain {
			return &NotLeaderError{Leader: info.GetMetadata()[NotLeaderAddressKey], Msg: msg}, true
		}
	}
	return nil, false
}

// RequestIDHeader is the gRPC metadata key of a call's request id: the
// client's id in hex, a dash, and the call's sequence number. Retries of a
// call carry the same id, so the master applies the call once.
const RequestIDHeader = "alcove-request-id"

// FormatRequestID renders a request id for RequestIDHeader.
func FormatRequestID(client []byte, seq uint64) string {
	return hex.EncodeToString(client) + "-" + strconv.FormatUint(seq, 10)
}

// ParseRequestID parses a RequestIDHeader value.
func ParseRequestID(s string) (*apiv1.RequestId, error) {
	c, n, ok := strings.Cut(s, "-")
	client, err := hex.DecodeString(c)
	if !ok || err != nil || len(client) == 0 || len(client) > 32 {
		return nil, fmt.Errorf("%w: request id %q: want HEXCLIENT-SEQ", ErrInvalidArgument, s)
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: request id %q: bad sequence number", ErrInvalidArgument, s)
	}
	return &apiv1.RequestId{ClientId: client, Seq: seq}, nil
}

// RequestIDFromContext returns the request id of an incoming gRPC call, nil
// when the caller sent none.
func RequestIDFromContext(ctx context.Context) (*apiv1.RequestId, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, nil
	}
	v := md.Get(RequestIDHeader)
	if len(v) == 0 {
		return nil, nil
	}
	return ParseRequestID(v[0])
}
