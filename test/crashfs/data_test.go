package crashfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// fileModel is the reference for fileData: bytes plus which pages are
// allocated (not holes), live and durable.
type fileModel struct {
	live, durable           []byte
	liveAlloc, durableAlloc []bool // per page
}

func pages(n int) int { return (n + pageSize - 1) / pageSize }

func (m *fileModel) resize(size int) {
	if size < len(m.live) {
		m.live = m.live[:size]
		m.liveAlloc = m.liveAlloc[:pages(size)]
		return
	}
	m.live = append(m.live, make([]byte, size-len(m.live))...)
	m.liveAlloc = append(m.liveAlloc, make([]bool, pages(size)-len(m.liveAlloc))...)
}

func (m *fileModel) write(off int, buf []byte) {
	if end := off + len(buf); end > len(m.live) {
		m.resize(end)
	}
	copy(m.live[off:], buf)
	for pg := off / pageSize; pg < pages(off+len(buf)); pg++ {
		m.liveAlloc[pg] = true
	}
}

func (m *fileModel) punch(off, n int) {
	end := min(off+n, len(m.live))
	if off >= end {
		return
	}
	first, last := (off+pageSize-1)/pageSize, end/pageSize
	if first >= last {
		m.write(off, make([]byte, end-off))
		return
	}
	m.write(off, make([]byte, first*pageSize-off))
	m.write(last*pageSize, make([]byte, end-last*pageSize))
	clear(m.live[first*pageSize : last*pageSize])
	for pg := first; pg < last; pg++ {
		m.liveAlloc[pg] = false
	}
}

// seek is SEEK_DATA/SEEK_HOLE on the live model.
func (m *fileModel) seek(off int, data bool) (int, bool) {
	for pg := off / pageSize; pg < len(m.liveAlloc); pg++ {
		if m.liveAlloc[pg] == data {
			return max(off, pg*pageSize), true
		}
	}
	if data {
		return 0, false
	}
	return len(m.live), true
}

// TestFileDataMatchesModel runs random writes, punches, truncates, syncs
// and crashes against the model, checking reads and SEEK_DATA/SEEK_HOLE.
func TestFileDataMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		p := filepath.Join(t.TempDir(), "store")
		store, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		d := newFileData(store, 0)
		m := &fileModel{}
		for step := 0; step < 400; step++ {
			switch op := rng.IntN(12); {
			case op < 4: // write, often unaligned, sometimes past the end
				off := rng.IntN(len(m.live) + 3*pageSize)
				buf := make([]byte, 1+rng.IntN(3*pageSize))
				for i := range buf {
					buf[i] = byte(rng.IntN(255) + 1)
				}
				if err := d.writeAt(buf, int64(off)); err != nil {
					t.Fatal(err)
				}
				m.write(off, buf)
			case op < 6: // punch, aligned or not
				off, n := rng.IntN(len(m.live)+pageSize), 1+rng.IntN(4*pageSize)
				if rng.IntN(2) == 0 {
					off, n = off/pageSize*pageSize, (n/pageSize+1)*pageSize
				}
				if err := d.punch(int64(off), int64(n)); err != nil {
					t.Fatal(err)
				}
				m.punch(off, n)
			case op < 7: // truncate up or down
				size := rng.IntN(len(m.live) + 2*pageSize)
				d.truncate(int64(size))
				m.resize(size)
			case op < 8:
				if err := d.sync(); err != nil {
					t.Fatal(err)
				}
				m.durable, m.durableAlloc = bytes.Clone(m.live), slices.Clone(m.liveAlloc)
			case op < 9: // crash: only the store file is left
				st, err := store.Stat()
				if err != nil {
					t.Fatal(err)
				}
				d = newFileData(store, st.Size())
				m.live, m.liveAlloc = bytes.Clone(m.durable), slices.Clone(m.durableAlloc)
			case op < 10:
				got := make([]byte, len(m.live)+100)
				n, err := d.readAt(got, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:n], m.live) {
					t.Fatalf("seed %d step %d: live view differs from the model (len %d vs %d)", seed, step, n, len(m.live))
				}
			default:
				if len(m.live) == 0 {
					continue
				}
				off := rng.IntN(len(m.live))
				for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
					got, err := d.seek(int64(off), whence)
					want, ok := m.seek(off, whence == unix.SEEK_DATA)
					if (err == nil) != ok || (ok && got != int64(want)) {
						t.Fatalf("seed %d step %d: seek(%d, %d) = %d, %v; want %d, %v", seed, step, off, whence, got, err, want, ok)
					}
				}
			}
			if d.size != int64(len(m.live)) {
				t.Fatalf("seed %d step %d: size %d, model %d", seed, step, d.size, len(m.live))
			}
		}
		onDisk, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, m.durable) {
			t.Fatalf("seed %d: store file differs from the durable model", seed)
		}
		store.Close()
	}
}

// TestFileDataReadsAcrossPages reads ranges that mix dirty pages, clean
// store bytes and the zeros beyond a shrink.
func TestFileDataReadsAcrossPages(t *testing.T) {
	store, err := os.Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d := newFileData(store, 0)
	full := bytes.Repeat([]byte{'a'}, 4*pageSize)
	if err := d.writeAt(full, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.sync(); err != nil {
		t.Fatal(err)
	}
	d.truncate(pageSize + 10) // durable 'a's beyond here must not come back
	d.truncate(4 * pageSize)  // ... as zeros
	if err := d.writeAt([]byte("bb"), 2*pageSize+5); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{'a'}, pageSize+10)
	want = append(want, make([]byte, 3*pageSize-10)...)
	copy(want[2*pageSize+5:], "bb")
	tests := []struct{ off, n int }{{0, 4 * pageSize}, {pageSize - 3, 20}, {2*pageSize + 4, 4}, {3 * pageSize, pageSize}, {100, 2 * pageSize}}
	for _, tc := range tests {
		got := make([]byte, tc.n)
		n, err := d.readAt(got, int64(tc.off))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:n], want[tc.off:tc.off+tc.n]) {
			t.Errorf("read %d@%d: got %q..., want %q...", tc.n, tc.off, got[:min(n, 16)], want[tc.off:tc.off+16])
		}
	}
}
