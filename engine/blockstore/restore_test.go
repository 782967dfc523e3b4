package blockstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/alcove-io/alcove/engine/meta"
)

// reopen closes s and opens a store over the same tiers, as a restarted
// worker does.
func reopen(t *testing.T, s *Store, tiers ...TierConfig) *Store {
	t.Helper()
	s.Close()
	return open(t, tiers...)
}

// cachedIn opens a store over a new tier of cluster c1 holding blocks.
func cachedIn(t *testing.T, alias string, blocks ...int64) (*Store, TierConfig) {
	t.Helper()
	cfg := tierCfg(t, alias, 8)
	s := open(t, cfg)
	accept(t, s, "c1")
	for _, id := range blocks {
		put(t, s, id)
	}
	return s, cfg
}

func accept(t *testing.T, s *Store, cluster string, rejected ...int64) bool {
	t.Helper()
	wiped, err := s.Accept(cluster, rejected)
	if err != nil {
		t.Fatal(err)
	}
	return wiped
}

func TestRestoreAfterRestart(t *testing.T) {
	for _, alias := range []string{"MEM", "SSD"} {
		t.Run(alias, func(t *testing.T) {
			cfg := tierCfg(t, alias, 8)
			s := open(t, cfg)
			accept(t, s, "c1")
			f := int64(9)
			for i := int64(0); i < 3; i++ {
				put(t, s, meta.BlockID(f, i))
			}
			s.Remove(meta.BlockID(f, 1))
			// A block being written when the worker dies: its bytes are on
			// disk but it was never committed.
			w, err := s.CreateBlock(meta.BlockID(f, 3), bs, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data(99, bs/2))

			s = reopen(t, s, cfg)
			if got := s.ClusterID(); got != "c1" {
				t.Fatalf("cluster id %q, want c1", got)
			}
			want := []int64{meta.BlockID(f, 0), meta.BlockID(f, 2)}
			var got []int64
			for _, b := range s.Blocks() {
				got = append(got, b.ID)
			}
			if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Fatalf("restored %v, want %v", got, want)
			}
			if _, err := s.OpenBlock(want[0]); err == nil {
				t.Fatal("a restored block is readable before the master accepted it")
			}
			if accept(t, s, "c1") {
				t.Fatal("same cluster wiped the cache")
			}
			for _, id := range want {
				if !bytes.Equal(read(t, s, id), data(id, bs)) {
					t.Fatalf("block %d: wrong bytes after restart", id)
				}
			}
			if u := s.Usage()[0].UsedBytes; u != 2*bs {
				t.Fatalf("used %d after restore, want %d", u, 2*bs)
			}
			// The interrupted block's range is a hole again, never served.
			assertHole(t, filepath.Join(cfg.Dir, "9"), 3*bs, bs/2)
			assertHole(t, filepath.Join(cfg.Dir, "9"), bs, bs)
		})
	}
}

func assertHole(t *testing.T, p string, off, n int64) {
	t.Helper()
	b := make([]byte, n)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, _ := f.ReadAt(b, off)
	if !bytes.Equal(b[:k], make([]byte, k)) {
		t.Fatalf("%s [%d, %d) still holds data", p, off, off+n)
	}
}

func TestRestoreAcceptRejectsAndWipes(t *testing.T) {
	a, b := meta.BlockID(5, 0), meta.BlockID(6, 0)
	s, cfg := cachedIn(t, "MEM", a, b)

	s = reopen(t, s, cfg)
	accept(t, s, "c1", b)
	if got := cached(s, a, b); !got[0] || got[1] {
		t.Fatalf("after a rejection cached = %v, want [true false]", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "6")); !os.IsNotExist(err) {
		t.Fatal("the rejected block's cache file is still there")
	}

	s = reopen(t, s, cfg)
	if !accept(t, s, "c2") {
		t.Fatal("another cluster's master did not wipe the cache")
	}
	if len(s.Blocks()) != 0 || s.Usage()[0].UsedBytes != 0 {
		t.Fatalf("blocks %v left after a wipe", s.Blocks())
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "5")); !os.IsNotExist(err) {
		t.Fatal("a wiped block's cache file is still there")
	}
	s = reopen(t, s, cfg)
	if s.ClusterID() != "c2" || len(s.Blocks()) != 0 {
		t.Fatalf("after wipe and restart: cluster %q, blocks %v", s.ClusterID(), s.Blocks())
	}
}

// Damage a crash can leave: the block written second is not restored
// and its range is a hole again.
func TestRestoreAfterDamage(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		// A drop record lost (power cut) after the range was punched.
		{"punched range", func(t *testing.T, dir string) {
			if err := punch(filepath.Join(dir, "3"), bs, bs); err != nil {
				t.Fatal(err)
			}
		}},
		// A torn record at the end of the manifest ends the log there.
		{"torn manifest", func(t *testing.T, dir string) {
			p := filepath.Join(dir, manifestName)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-3); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := meta.BlockID(3, 0), meta.BlockID(3, 1)
			s, cfg := cachedIn(t, "SSD", a, b)
			s.Close()
			tc.damage(t, cfg.Dir)
			s = open(t, cfg)
			if got := s.Blocks(); len(got) != 1 || got[0].ID != a {
				t.Fatalf("restored %v, want only block %d", got, a)
			}
			assertHole(t, filepath.Join(cfg.Dir, "3"), bs, bs)
		})
	}
}

// A block promoted from SSD to MEM is recorded in both until the SSD drop;
// restore keeps one copy, in the faster tier.
func TestRestorePromotedOnce(t *testing.T) {
	mem, ssd := tierCfg(t, "MEM", 8), tierCfg(t, "SSD", 8)
	mem.QuotaBytes = bs
	s := open(t, mem, ssd)
	accept(t, s, "c1")
	a, b := meta.BlockID(8, 0), meta.BlockID(8, 1)
	put(t, s, a)
	put(t, s, b) // to SSD: MEM is full
	s.Remove(a)
	if ok, err := s.Promote(b); err != nil || !ok {
		t.Fatalf("promote: %v %v", ok, err)
	}
	// Forge the crash window: an add of b in SSD again after its drop.
	s.mu.Lock()
	s.tiers[1].man.add(b, bs, bs)
	s.mu.Unlock()
	s = reopen(t, s, mem, ssd)
	accept(t, s, "c1")
	got := s.Blocks()
	if len(got) != 1 || got[0].ID != b || got[0].Tier != "MEM" {
		t.Fatalf("restored %+v, want block %d in MEM only", got, b)
	}
	if !bytes.Equal(read(t, s, b), data(b, bs)) {
		t.Fatal("promoted block: wrong bytes after restart")
	}
	if u := s.Usage(); u[1].UsedBytes != 0 {
		t.Fatalf("SSD still charged %d bytes", u[1].UsedBytes)
	}
}

func TestManifestCompaction(t *testing.T) {
	cfg := tierCfg(t, "MEM", 2)
	s := open(t, cfg)
	accept(t, s, "c1")
	for i := int64(0); i < 3000; i++ {
		put(t, s, meta.BlockID(1+i%50, 0))
	}
	st, err := os.Stat(filepath.Join(cfg.Dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 5000*recordSize {
		t.Fatalf("manifest of %d bytes after 3000 commits and 2998 evictions: not compacted", st.Size())
	}
	s = reopen(t, s, cfg)
	if n := len(s.Blocks()); n != 2 {
		t.Fatalf("restored %d blocks, want the 2 last ones", n)
	}
}
