package meta

import (
	"fmt"
	"strings"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// DefaultWriteType is Alluxio's default write type.
const DefaultWriteType = apiv1.WriteType_ASYNC_THROUGH

// DefaultReadType is Alluxio's default read type.
const DefaultReadType = apiv1.ReadType_CACHE

// ParseWriteType accepts Alluxio's names (MUST_CACHE, CACHE_THROUGH, THROUGH,
// ASYNC_THROUGH), case-insensitively.
func ParseWriteType(s string) (apiv1.WriteType, error) {
	v, ok := apiv1.WriteType_value[strings.ToUpper(strings.TrimSpace(s))]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%w: unknown write type %q (use MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH)", ErrInvalidArgument, s)
	}
	return apiv1.WriteType(v), nil
}

// ParseReadType accepts Alluxio's names (CACHE, CACHE_PROMOTE, NO_CACHE).
func ParseReadType(s string) (apiv1.ReadType, error) {
	v, ok := apiv1.ReadType_value[strings.ToUpper(strings.TrimSpace(s))]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%w: unknown read type %q (use CACHE, CACHE_PROMOTE or NO_CACHE)", ErrInvalidArgument, s)
	}
	return apiv1.ReadType(v), nil
}

// Caches reports whether a write type keeps a copy in the worker cache.
func Caches(wt apiv1.WriteType) bool { return wt != apiv1.WriteType_THROUGH }

// WritesUfsSync reports whether a write type writes the UFS before the file completes.
func WritesUfsSync(wt apiv1.WriteType) bool {
	return wt == apiv1.WriteType_THROUGH || wt == apiv1.WriteType_CACHE_THROUGH
}

// Tier aliases, ordered from fastest to slowest.
var TierOrder = []string{"MEM", "SSD", "HDD"}

// WriteAcceptedHeader is the response header a worker sends on a WriteFile
// stream once it takes the write, before any data: a client that gets the
// stream's status instead (a draining worker) writes through another one.
const WriteAcceptedHeader = "alcove-write-accepted"
