package meta

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Wrap them with context (fmt.Errorf("...: %w", ErrNotFound));
// ToStatus maps them to gRPC codes and FromStatus maps codes back, so errors.Is
// works on both sides of an RPC.
var (
	ErrNotFound           = errors.New("does not exist")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidPath        = errors.New("invalid path")
	ErrNameTooLong        = errors.New("name too long")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrIsDirectory        = errors.New("is a directory")
	ErrNotDirectory       = errors.New("not a directory")
	ErrDirectoryNotEmpty  = errors.New("directory not empty")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrNoSpace            = errors.New("no space left in cache")
	ErrDataLost           = errors.New("data lost")
	ErrUnavailable        = errors.New("unavailable")
	ErrNotLeader          = errors.New("not the leader master")
	ErrPermission         = errors.New("permission denied")
	ErrAborted            = errors.New("aborted")
	// ErrUFSUnavailable: the under storage (not Alcove) cannot be reached
	// or does not answer in time. It is an ErrUnavailable, but callers must
	// not take it for a master to fail over from.
	ErrUFSUnavailable = fmt.Errorf("under storage %w", ErrUnavailable)
	// ErrUnauthenticated: the caller did not prove who it is (no client
	// certificate, a missing, forged or expired block token).
	ErrUnauthenticated = errors.New("unauthenticated")
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrInvalidPath, codes.InvalidArgument},
	{ErrNameTooLong, codes.InvalidArgument},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrIsDirectory, codes.FailedPrecondition},
	{ErrNotDirectory, codes.FailedPrecondition},
	{ErrDirectoryNotEmpty, codes.FailedPrecondition},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrNoSpace, codes.ResourceExhausted},
	{ErrDataLost, codes.DataLoss},
	{ErrUFSUnavailable, codes.Unavailable},
	{ErrUnavailable, codes.Unavailable},
	{ErrNotLeader, codes.Unavailable},
	{ErrPermission, codes.PermissionDenied},
	{ErrAborted, codes.Aborted},
	{ErrUnauthenticated, codes.Unauthenticated},
}

// reasonKey tags the sentinel in the status message so FromStatus can restore
// the exact sentinel, not only the code.
const reasonSep = " :: "

// ToStatus converts an error from the domain into a gRPC status error. It is
// the one place where sentinels become codes.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, os.ErrNotExist):
		return status.Error(codes.NotFound, err.Error()+reasonSep+ErrNotFound.Error())
	case errors.Is(err, syscall.ENOSPC):
		return status.Error(codes.ResourceExhausted, err.Error()+reasonSep+ErrNoSpace.Error())
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error()+reasonSep+c.err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// FromStatus turns a gRPC status error back into an error that wraps the
// matching sentinel, with the server's message. Non-status errors pass through.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	reason := ""
	for i := len(msg) - len(reasonSep); i >= 0; i-- {
		if msg[i:i+len(reasonSep)] == reasonSep {
			reason, msg = msg[i+len(reasonSep):], msg[:i]
			break
		}
	}
	if nl, ok := notLeaderFromStatus(st, msg); ok {
		return nl
	}
	for _, c := range codeOf {
		if c.err.Error() == reason {
			return &remoteError{msg: msg, sentinel: c.err, code: st.Code()}
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return &remoteError{msg: msg, sentinel: ErrUnavailable, code: st.Code()}
	case codes.NotFound:
		return &remoteError{msg: msg, sentinel: ErrNotFound, code: st.Code()}
	case codes.DeadlineExceeded:
		return &remoteError{msg: msg, sentinel: context.DeadlineExceeded, code: st.Code()}
	case codes.Canceled:
		return &remoteError{msg: msg, sentinel: context.Canceled, code: st.Code()}
	}
	return &remoteError{msg: msg, code: st.Code()}
}

type remoteError struct {
	msg      string
	sentinel error
	code     codes.Code
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// GRPCStatus keeps the code when the error is returned again over gRPC.
func (e *remoteError) GRPCStatus() *status.Status {
	if e.sentinel != nil {
		return status.New(e.code, e.msg+reasonSep+e.sentinel.Error())
	}
	return status.New(e.code, e.msg)
}

// Errno maps an error to the errno a POSIX caller (FUSE) should see.
func Errno(err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &en):
		return en
	case errors.Is(err, ErrNotFound), errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ErrAlreadyExists):
		return syscall.EEXIST
	case errors.Is(err, ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, ErrInvalidPath), errors.Is(err, ErrInvalidArgument):
		return syscall.EINVAL
	case errors.Is(err, ErrIsDirectory):
		return syscall.EISDIR
	case errors.Is(err, ErrNotDirectory):
		return syscall.ENOTDIR
	case errors.Is(err, ErrDirectoryNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, ErrPermission), errors.Is(err, ErrUnauthenticated):
		return syscall.EACCES
	case errors.Is(err, ErrNotLeader):
		return syscall.EAGAIN
	case errors.Is(err, ErrUnavailable):
		// A store or worker that cannot be reached: an I/O error to the
		// reader (EAGAIN would tell a blocking read to just retry).
		return syscall.EIO
	case errors.Is(err, ErrDataLost):
		return syscall.EIO
	}
	return syscall.EIO
}
