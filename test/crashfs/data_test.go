package crashfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestFileDataMatchesModel runs random writes, truncates, syncs and crashes
// against two byte slices: the live file and the durable one.
func TestFileDataMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		p := filepath.Join(t.TempDir(), "store")
		store, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		d := newFileData(store, 0)
		var live, durable []byte
		for step := 0; step < 400; step++ {
			switch op := rng.IntN(10); {
			case op < 5: // write, often unaligned, sometimes past the end
				off := rng.Int64N(int64(len(live)) + 3*pageSize)
				buf := make([]byte, 1+rng.IntN(3*pageSize))
				for i := range buf {
					buf[i] = byte(rng.IntN(255) + 1)
				}
				if err := d.writeAt(buf, off); err != nil {
					t.Fatal(err)
				}
				if end := off + int64(len(buf)); end > int64(len(live)) {
					live = append(live, make([]byte, end-int64(len(live)))...)
				}
				copy(live[off:], buf)
			case op < 7: // truncate up or down
				size := rng.Int64N(int64(len(live)) + 2*pageSize)
				d.truncate(size)
				if size < int64(len(live)) {
					live = live[:size]
				} else {
					live = append(live, make([]byte, size-int64(len(live)))...)
				}
			case op < 8:
				if err := d.sync(); err != nil {
					t.Fatal(err)
				}
				durable = bytes.Clone(live)
			case op < 9: // crash: only the store file is left
				st, err := store.Stat()
				if err != nil {
					t.Fatal(err)
				}
				d = newFileData(store, st.Size())
				live = bytes.Clone(durable)
			default:
				got := make([]byte, len(live)+100)
				n, err := d.readAt(got, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:n], live) {
					t.Fatalf("seed %d step %d: live view differs from the model (len %d vs %d)", seed, step, n, len(live))
				}
			}
			if d.size != int64(len(live)) {
				t.Fatalf("seed %d step %d: size %d, model %d", seed, step, d.size, len(live))
			}
		}
		onDisk, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, durable) {
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
