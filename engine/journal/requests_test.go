package journal

import (
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

func rid(seq uint64) *apiv1.RequestId {
	return &apiv1.RequestId{ClientId: []byte("client-a"), Seq: seq}
}

// TestRequestTable: records are found until they expire by entry time or by
// count, oldest first, and expiry depends only on what was applied.
func TestRequestTable(t *testing.T) {
	defer func(old uint64) { MaxRequests = old }(MaxRequests)
	MaxRequests = 4
	run := func() map[uint64]bool {
		db, err := bbolt.Open(filepath.Join(t.TempDir(), "r.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		retention := RequestRetention.Milliseconds()
		steps := []struct {
			seq  uint64
			time int64
		}{{1, 1000}, {2, 1001}, {3, 1002}, {4, 1003}, {5, 1004}, {6, 1005 + retention}}
		for _, s := range steps {
			err := db.Update(func(tx *bbolt.Tx) error {
				if _, err := tx.CreateBucketIfNotExists(MetaBucket); err != nil {
					return err
				}
				return RecordRequest(tx, rid(s.seq), s.time, []byte{byte(s.seq)})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		found := map[uint64]bool{}
		_ = db.View(func(tx *bbolt.Tx) error {
			for seq := uint64(1); seq <= 6; seq++ {
				if v, ok := LookupRequest(tx, rid(seq)); ok {
					if len(v) != 1 || v[0] != byte(seq) {
						t.Errorf("request %d: result %v", seq, v)
					}
					found[seq] = true
				}
			}
			return nil
		})
		return found
	}
	// 5 records > 4: the oldest (1) goes by count. Record 6 comes after the
	// retention of 2..5: two of them expire (at most two per record).
	want := map[uint64]bool{4: true, 5: true, 6: true}
	for i := range 2 {
		got := run()
		if len(got) != len(want) {
			t.Fatalf("run %d: found %v, want %v", i, got, want)
		}
		for k := range want {
			if !got[k] {
				t.Fatalf("run %d: found %v, want %v", i, got, want)
			}
		}
	}
}
