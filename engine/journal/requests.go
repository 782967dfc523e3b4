package journal

import (
	"bytes"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// The request table makes retried client calls exactly-once: the entry that
// carries out a call records its request id and result in the same
// transaction as the mutation, and a retry (a new entry with the same id, or
// a call that finds the id recorded) gets the first result instead of being
// applied again.
//
// Retention is decided from entry times and counts only, never the local
// clock, so every member and every replay keeps exactly the same records.
const (
	// RequestRetention is how long a request id is remembered after it was
	// applied; clients give up retrying long before (seconds).
	RequestRetention = 10 * time.Minute
	// expirePerApply bounds the records one entry expires, so no entry
	// carries an unbounded amount of clean-up; two per recorded request keep
	// the table shrinking whenever it is over its bounds.
	expirePerApply = 2
)

// MaxRequests bounds the table; the oldest records go first. (A variable
// only so tests can lower it: every member must use the same value.)
var MaxRequests uint64 = 1 << 20

var (
	requestsBucket = []byte("requests")         // key → time_ms (8 bytes) + result
	requestsByTime = []byte("requests_by_time") // time_ms (8 bytes) + key → nil
	requestCount   = []byte("request_count")    // in MetaBucket
)

func requestKey(id *apiv1.RequestId) []byte {
	k := make([]byte, 0, len(id.GetClientId())+9)
	k = append(k, byte(len(id.GetClientId())))
	k = append(k, id.GetClientId()...)
	return append(k, PutU64(id.GetSeq())...)
}

// LookupRequest returns the result recorded for id, if id was applied (and
// not yet expired).
func LookupRequest(tx *bbolt.Tx, id *apiv1.RequestId) ([]byte, bool) {
	b := tx.Bucket(requestsBucket)
	if b == nil || id == nil {
		return nil, false
	}
	v := b.Get(requestKey(id))
	if v == nil {
		return nil, false
	}
	return bytes.Clone(v[8:]), true
}

// RecordRequest records that id was applied at timeMs with result, and
// expires old records. Call it in the transaction of the mutation.
func RecordRequest(tx *bbolt.Tx, id *apiv1.RequestId, timeMs int64, result []byte) error {
	b, err := tx.CreateBucketIfNotExists(requestsBucket)
	if err != nil {
		return fmt.Errorf("record request: %w", err)
	}
	byTime, err := tx.CreateBucketIfNotExists(requestsByTime)
	if err != nil {
		return fmt.Errorf("record request: %w", err)
	}
	k := requestKey(id)
	if b.Get(k) != nil {
		return nil
	}
	t := PutU64(uint64(timeMs))
	if err := b.Put(k, append(t, result...)); err != nil {
		return fmt.Errorf("record request: %w", err)
	}
	if err := byTime.Put(append(t, k...), nil); err != nil {
		return fmt.Errorf("record request: %w", err)
	}
	mb := tx.Bucket(MetaBucket)
	n := U64(mb.Get(requestCount)) + 1
	cutoff := timeMs - RequestRetention.Milliseconds()
	c := byTime.Cursor()
	for range expirePerApply {
		tk, _ := c.First()
		if tk == nil || (int64(U64(tk[:8])) >= cutoff && n <= MaxRequests) {
			break
		}
		if err := b.Delete(tk[8:]); err != nil {
			return fmt.Errorf("expire request: %w", err)
		}
		if err := c.Delete(); err != nil {
			return fmt.Errorf("expire request: %w", err)
		}
		n--
	}
	return mb.Put(requestCount, PutU64(n))
}
