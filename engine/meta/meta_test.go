package meta

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"/", "/", nil},
		{"/a/b/", "/a/b", nil},
		{"//a//./b", "/a/b", nil},
		{"/a/../b", "/b", nil},
		{"/a/b/../..", "/", nil},
		{"", "", ErrInvalidPath},
		{"a/b", "", ErrInvalidPath},
		{"/..", "", ErrInvalidPath},
		{"/a/../../etc", "", ErrInvalidPath},
		{"/a\x00b", "", ErrInvalidPath},
		{"/" + strings.Repeat("x", 256), "", ErrNameTooLong},
		{"/" + strings.Repeat("x", 255), "/" + strings.Repeat("x", 255), nil},
	} {
		got, err := CleanPath(tc.in)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	if got := Components("/a/b"); len(got) != 2 || got[1] != "b" {
		t.Errorf("Components = %v", got)
	}
	if Components("/") != nil || Base("/") != "" || Parent("/a") != "/" || Base("/a/b") != "b" {
		t.Error("root/base/parent helpers")
	}
	for _, tc := range []struct {
		p, dir string
		under  bool
		rel    string
	}{
		{"/a/b", "/a", true, "b"}, {"/a", "/a", true, ""}, {"/ab", "/a", false, ""}, {"/x", "/", true, "x"},
	} {
		if HasPrefix(tc.p, tc.dir) != tc.under {
			t.Errorf("HasPrefix(%q, %q) != %v", tc.p, tc.dir, tc.under)
		}
		if tc.under && RelPath(tc.p, tc.dir) != tc.rel {
			t.Errorf("RelPath(%q, %q) = %q, want %q", tc.p, tc.dir, RelPath(tc.p, tc.dir), tc.rel)
		}
	}
}

func TestBlocks(t *testing.T) {
	id := BlockID(12345, 77)
	if FileIDOf(id) != 12345 || BlockIndexOf(id) != 77 {
		t.Fatalf("block id %d does not round trip", id)
	}
	for _, tc := range []struct{ length, bs, count, last int64 }{
		{0, 10, 0, 0}, {1, 10, 1, 1}, {10, 10, 1, 10}, {25, 10, 3, 5}, {25, 0, 0, 0}, {25, -1, 0, 0},
	} {
		if c := BlockCount(tc.length, tc.bs); c != tc.count {
			t.Errorf("BlockCount(%d,%d) = %d, want %d", tc.length, tc.bs, c, tc.count)
		}
		if tc.count > 0 && BlockLength(tc.length, tc.bs, tc.count-1) != tc.last {
			t.Errorf("last block of %d/%d = %d, want %d", tc.length, tc.bs, BlockLength(tc.length, tc.bs, tc.count-1), tc.last)
		}
	}
	if ValidateBlockSize(0) == nil || ValidateBlockSize(64<<20) != nil {
		t.Error("ValidateBlockSize")
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("stat /x: %w", ErrNotFound), codes.NotFound},
		{fmt.Errorf("mkdir /x: %w", ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("p: %w", ErrInvalidPath), codes.InvalidArgument},
		{fmt.Errorf("rmdir: %w", ErrDirectoryNotEmpty), codes.FailedPrecondition},
		{fmt.Errorf("write: %w", ErrNoSpace), codes.ResourceExhausted},
		{fmt.Errorf("read: %w", ErrDataLost), codes.DataLoss},
		{fmt.Errorf("open: %w", os.ErrNotExist), codes.NotFound},
		{fmt.Errorf("S3 read s3://b/k: %w", ErrUFSUnavailable), codes.Unavailable},
		{errors.New("boom"), codes.Internal},
	} {
		st := ToStatus(tc.err)
		if status.Code(st) != tc.code {
			t.Errorf("ToStatus(%v) code = %v, want %v", tc.err, status.Code(st), tc.code)
		}
		back := FromStatus(st)
		if back.Error() != tc.err.Error() {
			t.Errorf("FromStatus message = %q, want %q", back.Error(), tc.err.Error())
		}
		for _, c := range codeOf {
			if errors.Is(tc.err, c.err) && !errors.Is(back, c.err) {
				t.Errorf("FromStatus(%v) lost sentinel %v", tc.err, c.err)
			}
		}
		if status.Code(ToStatus(back)) != tc.code {
			t.Errorf("re-sent error changed code")
		}
	}
	if !errors.Is(FromStatus(status.Error(codes.Unavailable, "connection refused")), ErrUnavailable) {
		t.Error("plain Unavailable should map to ErrUnavailable")
	}
	if back := FromStatus(ToStatus(fmt.Errorf("x: %w", ErrUFSUnavailable))); !errors.Is(back, ErrUFSUnavailable) || !errors.Is(back, ErrUnavailable) {
		t.Error("an unreachable UFS must stay ErrUFSUnavailable (and ErrUnavailable) across gRPC")
	}
	if errors.Is(FromStatus(ToStatus(fmt.Errorf("x: %w", ErrUnavailable))), ErrUFSUnavailable) {
		t.Error("an unreachable master is not an unreachable UFS")
	}
}

func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0}, {ErrNotFound, syscall.ENOENT}, {ErrNameTooLong, syscall.ENAMETOOLONG}, {ErrDirectoryNotEmpty, syscall.ENOTEMPTY},
		{ErrNoSpace, syscall.ENOSPC}, {ErrIsDirectory, syscall.EISDIR}, {fmt.Errorf("x: %w", syscall.EROFS), syscall.EROFS},
		{FromStatus(ToStatus(fmt.Errorf("x: %w", ErrAlreadyExists))), syscall.EEXIST},
		{FromStatus(ToStatus(fmt.Errorf("x: %w", ErrUFSUnavailable))), syscall.EIO},
	} {
		if got := Errno(tc.err); got != tc.want {
			t.Errorf("Errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestParseTypes(t *testing.T) {
	if wt, err := ParseWriteType("cache_through"); err != nil || wt.String() != "CACHE_THROUGH" {
		t.Errorf("ParseWriteType = %v, %v", wt, err)
	}
	if _, err := ParseWriteType("WRITE_TYPE_UNSPECIFIED"); err == nil {
		t.Error("unspecified write type accepted")
	}
	if _, err := ParseReadType("fast"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseReadType(fast) = %v", err)
	}
}
