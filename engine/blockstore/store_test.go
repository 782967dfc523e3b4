package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

const bs = 64 << 10 // block size used by the tests

func tierCfg(t *testing.T, alias string, blocks int64) TierConfig {
	return TierConfig{Alias: alias, Dir: t.TempDir(), QuotaBytes: blocks * bs, HighWatermark: 1, LowWatermark: 1}
}

func open(t *testing.T, tiers ...TierConfig) *Store {
	t.Helper()
	s, err := Open(context.Background(), tiers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func data(id int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(id)).Read(b)
	return b
}

// put writes and commits a full block of pseudo-random bytes.
func put(t *testing.T, s *Store, id int64) BlockInfo {
	t.Helper()
	info, err := tryPut(s, id, bs)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func tryPut(s *Store, id int64, n int) (BlockInfo, error) {
	w, err := s.CreateBlock(id, bs, 0)
	if err != nil {
		return BlockInfo{}, err
	}
	if _, err := w.Write(data(id, n)); err != nil {
		w.Abort()
		return BlockInfo{}, err
	}
	return w.Commit()
}

func read(t *testing.T, s *Store, id int64) []byte {
	t.Helper()
	h, err := s.OpenBlock(id)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b := make([]byte, h.Length)
	if _, err := h.File.ReadAt(b, h.Offset); err != nil {
		t.Fatal(err)
	}
	return b
}

func cached(s *Store, ids ...int64) []bool {
	out := make([]bool, len(ids))
	for i, id := range ids {
		_, out[i] = s.Get(id)
	}
	return out
}

func TestTiersQuotaAndLRUEviction(t *testing.T) {
	f := int64(7)
	b := func(i int64) int64 { return meta.BlockID(f, i) }
	tests := []struct {
		name      string
		tiers     []int64 // quota in blocks per tier
		touch     []int64 // block indexes read after writing 0..writes-1
		writes    int64
		wantTiers []string
		wantGone  []int64
	}{
		{name: "fills top tier then the next", tiers: []int64{2, 2}, writes: 4, wantTiers: []string{"MEM", "MEM", "SSD", "SSD"}},
		{name: "evicts least recently written", tiers: []int64{3}, writes: 4, wantGone: []int64{0}},
		{name: "a read refreshes a block", tiers: []int64{3}, writes: 3, touch: []int64{0}, wantGone: []int64{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfgs []TierConfig
			for i, q := range tc.tiers {
				cfgs = append(cfgs, tierCfg(t, meta.TierOrder[i], q))
			}
			s := open(t, cfgs...)
			for i := int64(0); i < tc.writes; i++ {
				put(t, s, b(i))
			}
			for _, i := range tc.touch {
				read(t, s, b(i))
			}
			if len(tc.touch) > 0 {
				put(t, s, b(tc.writes))
			}
			for i, want := range tc.wantTiers {
				if got, _ := s.Get(b(int64(i))); got.Tier != want {
					t.Errorf("block %d in tier %q, want %q", i, got.Tier, want)
				}
			}
			for _, i := range tc.wantGone {
				if _, ok := s.Get(b(i)); ok {
					t.Errorf("block %d still cached, want evicted", i)
				}
			}
			for _, u := range s.Usage() {
				if u.UsedBytes > u.CapacityBytes {
					t.Errorf("tier %s uses %d > capacity %d", u.Alias, u.UsedBytes, u.CapacityBytes)
				}
			}
		})
	}
}

func TestNeverEvictsPinnedOrLocked(t *testing.T) {
	tests := []struct {
		name string
		hold func(s *Store, id int64) func()
	}{
		{"pinned", func(s *Store, id int64) func() { s.Pin(meta.FileIDOf(id)); return func() {} }},
		{"locked by a reader", func(s *Store, id int64) func() {
			h, err := s.OpenBlock(id)
			if err != nil {
				panic(err)
			}
			return func() { h.Close() }
		}},
		{"being written", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, tierCfg(t, "MEM", 2))
			a, b := meta.BlockID(1, 0), meta.BlockID(2, 0)
			if tc.hold == nil {
				w1, _ := s.CreateBlock(a, bs, 0)
				w2, _ := s.CreateBlock(b, bs, 0)
				defer w1.Abort()
				defer w2.Abort()
			} else {
				put(t, s, a)
				put(t, s, b)
				defer tc.hold(s, a)()
				defer tc.hold(s, b)()
			}
			if _, err := tryPut(s, meta.BlockID(3, 0), bs); !errors.Is(err, meta.ErrNoSpace) {
				t.Fatalf("create with everything held: err = %v, want ErrNoSpace", err)
			}
			if tc.hold != nil {
				if got := cached(s, a, b); !got[0] || !got[1] {
					t.Fatalf("held blocks evicted: %v", got)
				}
				if !bytes.Equal(read(t, s, a), data(a, bs)) {
					t.Fatal("held block's bytes changed")
				}
			}
		})
	}
}

func TestUnpersistedEvictedLast(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 2))
	only, safe := meta.BlockID(1, 0), meta.BlockID(2, 0)
	s.MarkUnpersisted(1, false)
	put(t, s, only) // older: LRU would pick it first
	put(t, s, safe)
	put(t, s, meta.BlockID(3, 0))
	if got := cached(s, only, safe); !got[0] || got[1] {
		t.Fatalf("cached(unpersisted, persisted) = %v, want [true false]", got)
	}
	if s.LostBlocks() != 0 {
		t.Fatalf("lost = %d", s.LostBlocks())
	}
	s.Pin(3)
	put(t, s, meta.BlockID(4, 0)) // last resort: the unpersisted block goes
	if cached(s, only)[0] {
		t.Fatal("unpersisted block kept although nothing else could go")
	}
	if s.LostBlocks() != 1 || s.Evictions() != 2 {
		t.Fatalf("lost = %d evictions = %d, want 1 and 2", s.LostBlocks(), s.Evictions())
	}
}

func TestWatermarks(t *testing.T) {
	c := tierCfg(t, "SSD", 10)
	c.HighWatermark, c.LowWatermark = 0.8, 0.5
	s := open(t, c)
	for i := int64(0); i < 9; i++ {
		put(t, s, meta.BlockID(1, i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Usage()[0].UsedBytes > 5*bs {
		if time.Now().After(deadline) {
			t.Fatalf("used %d bytes, want <= low watermark %d", s.Usage()[0].UsedBytes, 5*bs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The newest blocks survive.
	if got := cached(s, meta.BlockID(1, 8), meta.BlockID(1, 0)); !got[0] || got[1] {
		t.Fatalf("cached(newest, oldest) = %v", got)
	}
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestLayoutAndPunchHole(t *testing.T) {
	dirs := []struct{ name, dir string }{{"disk", t.TempDir()}}
	if shm, err := os.MkdirTemp("/dev/shm", "alcove-bs-test"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		dirs = append(dirs, struct{ name, dir string }{"tmpfs", shm})
	}
	for _, d := range dirs {
		t.Run(d.name, func(t *testing.T) {
			s := open(t, TierConfig{Alias: "MEM", Dir: d.dir, QuotaBytes: 10 * bs})
			var want []byte
			for i := int64(0); i < 3; i++ {
				put(t, s, meta.BlockID(5, i))
				want = append(want, data(meta.BlockID(5, i), bs)...)
			}
			p := filepath.Join(d.dir, "5")
			// One fd reads the whole file at file offsets.
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("cache file does not hold the file's bytes at file offsets (err %v)", err)
			}
			before := allocated(t, p)
			s.Remove(meta.BlockID(5, 1))
			after := allocated(t, p)
			if before-after < bs {
				t.Fatalf("punching a block freed %d bytes, want >= %d", before-after, bs)
			}
			if fi, _ := os.Stat(p); fi.Size() != 3*bs {
				t.Fatalf("size %d changed by punching", fi.Size())
			}
			s.Remove(meta.BlockID(5, 0))
			s.Remove(meta.BlockID(5, 2))
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("cache file still exists after its last block left: %v", err)
			}
			if u := s.Usage()[0].UsedBytes; u != 0 {
				t.Fatalf("used = %d after removing everything", u)
			}
		})
	}
}

func TestRemoveWhileLeasedKeepsBytes(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 4))
	id := meta.BlockID(9, 1)
	put(t, s, id)
	h, err := s.OpenBlock(id)
	if err != nil {
		t.Fatal(err)
	}
	s.Remove(id)
	if _, err := s.OpenBlock(id); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("open of a removed block: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateBlock(id, bs, 0); !errors.Is(err, meta.ErrAlreadyExists) {
		t.Fatalf("re-create while the old copy is leased: %v, want ErrAlreadyExists", err)
	}
	got := make([]byte, h.Length)
	if _, err := h.File.ReadAt(got, h.Offset); err != nil || !bytes.Equal(got, data(id, bs)) {
		t.Fatalf("leased block changed after Remove (err %v)", err)
	}
	h.Close()
	if u := s.Usage()[0].UsedBytes; u != 0 {
		t.Fatalf("used = %d after the lease ended", u)
	}
	put(t, s, id)
}

func TestPromote(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 1), tierCfg(t, "SSD", 4))
	a, b := meta.BlockID(1, 0), meta.BlockID(1, 1)
	put(t, s, a)
	put(t, s, b) // SSD
	s.Pin(1)     // a cannot be evicted: no room to promote
	if ok, err := s.Promote(b); err != nil || ok {
		t.Fatalf("promote into a full pinned tier = %v, %v; want false, nil", ok, err)
	}
	s.SetPinned(nil)
	if ok, err := s.Promote(b); err != nil || !ok {
		t.Fatalf("promote = %v, %v", ok, err)
	}
	if got, _ := s.Get(b); got.Tier != "MEM" {
		t.Fatalf("promoted block in %s", got.Tier)
	}
	if !bytes.Equal(read(t, s, b), data(b, bs)) {
		t.Fatal("promoted bytes differ")
	}
	if u := s.Usage(); u[0].UsedBytes != bs || u[1].UsedBytes != 0 {
		t.Fatalf("usage after promote: %+v", u)
	}
	if _, err := s.Promote(meta.BlockID(2, 0)); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("promote absent: %v", err)
	}
}

func TestEventsAndAbort(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 4))
	a, b := meta.BlockID(1, 0), meta.BlockID(1, 1)
	put(t, s, a)
	w, err := s.CreateBlock(b, bs, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 101)); !errors.Is(err, meta.ErrInvalidArgument) {
		t.Fatalf("write beyond reservation: %v", err)
	}
	w.Abort()
	added, removed := s.DrainEvents()
	if len(added) != 1 || added[0].ID != a || len(removed) != 0 {
		t.Fatalf("events = %v %v", added, removed)
	}
	s.Remove(a)
	put(t, s, b)
	added, removed = s.DrainEvents()
	if len(added) != 1 || added[0].ID != b || len(removed) != 1 || removed[0] != a {
		t.Fatalf("events = %v %v", added, removed)
	}
	if bl := s.Blocks(); len(bl) != 1 || bl[0].ID != b {
		t.Fatalf("blocks = %v", bl)
	}
	if u := s.Usage()[0].UsedBytes; u != bs {
		t.Fatalf("used = %d", u)
	}
}

func TestOpenRemovesUnrecordedFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "42"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o644)
	open(t, TierConfig{Alias: "MEM", Dir: dir, QuotaBytes: bs})
	if _, err := os.Stat(filepath.Join(dir, "42")); !os.IsNotExist(err) {
		t.Fatal("unrecorded cache file kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.txt")); err != nil {
		t.Fatal("non-cache file removed")
	}
}

func TestConcurrent(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 8), tierCfg(t, "SSD", 8))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 200; i++ {
				id := meta.BlockID(int64(r.Intn(4)+1), int64(r.Intn(8)))
				switch r.Intn(5) {
				case 0, 1:
					tryPut(s, id, bs)
				case 2:
					s.Remove(id)
				case 3:
					s.Promote(id)
				default:
					h, err := s.OpenBlock(id)
					if err != nil {
						continue
					}
					got := make([]byte, h.Length)
					if _, err := h.File.ReadAt(got, h.Offset); err != nil && err != io.EOF {
						panic(err)
					}
					if !bytes.Equal(got, data(id, bs)) {
						panic(fmt.Sprintf("block %d: wrong bytes under lease", id))
					}
					h.Close()
				}
			}
		}(g)
	}
	wg.Wait()
	var sum int64
	for _, b := range s.Blocks() {
		sum += b.Length
	}
	var used int64
	for _, u := range s.Usage() {
		used += u.UsedBytes
	}
	if sum != used {
		t.Fatalf("accounting drift: blocks sum %d, used %d", sum, used)
	}
}

func TestNeverEvictsOwnUnpersistedSiblings(t *testing.T) {
	s := open(t, tierCfg(t, "MEM", 2))
	s.MarkUnpersisted(1, false)
	put(t, s, meta.BlockID(1, 0))
	put(t, s, meta.BlockID(1, 1))
	if _, err := tryPut(s, meta.BlockID(1, 2), bs); !errors.Is(err, meta.ErrNoSpace) {
		t.Fatalf("third block of an unpersisted file in a 2-block cache: %v, want ErrNoSpace", err)
	}
	if got := cached(s, meta.BlockID(1, 0), meta.BlockID(1, 1)); !got[0] || !got[1] {
		t.Fatalf("own blocks evicted: %v", got)
	}
}

// WaitBlock follows a block being written to its end: committed, aborted,
// or the caller giving up.
func TestWaitBlock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		finish func(*Writer)
		cancel bool
		want   bool
	}{
		{"commit", func(w *Writer) { w.Write(data(1, bs)); w.Commit() }, false, true},
		{"abort", func(w *Writer) { w.Abort() }, false, false},
		{"caller gives up", func(w *Writer) {}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, tierCfg(t, "MEM", 4))
			if got, err := s.WaitBlock(context.Background(), 1); got || err != nil {
				t.Fatalf("absent block: %v, %v", got, err)
			}
			w, err := s.CreateBlock(1, bs, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				ok  bool
				err error
			}
			res := make(chan result, 1)
			go func() { ok, err := s.WaitBlock(ctx, 1); res <- result{ok, err} }()
			select {
			case r := <-res:
				t.Fatalf("returned while the block is written: %v", r)
			case <-time.After(50 * time.Millisecond):
			}
			tc.finish(w)
			if tc.cancel {
				cancel()
			}
			select {
			case r := <-res:
				if r.ok != tc.want || (r.err != nil) != tc.cancel {
					t.Fatalf("WaitBlock = %v, %v; want %v (error: %v)", r.ok, r.err, tc.want, tc.cancel)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("WaitBlock did not return")
			}
		})
	}
}
