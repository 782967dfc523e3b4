package crashfs_test

import (
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/alcove-io/alcove/test/crashfs"
)

// TestRandomNamespace runs random creates, mkdirs, renames, links, removes
// and fsyncs, and checks that the crash leaves exactly the tree as it was
// after the last operation an fsync made durable: the namespace is an
// ordered log, and the model decides which fsync covers which operation.
func TestRandomNamespace(t *testing.T) {
	seed := crashfs.Seed(t)
	for _, model := range []crashfs.Model{crashfs.Ordered, crashfs.Strict} {
		for round := range uint64(crashfs.Rounds(t, 10)) {
			rng := rand.New(rand.NewPCG(seed, round))
			fsys := crashfs.New(t, crashfs.Options{Model: model})
			h := &nsHistory{t: t, root: fsys.Path(), model: model, lastEntry: map[uint64]int{}, lastSelf: map[uint64]int{}}
			h.snaps = append(h.snaps, h.tree())
			for i := 0; i < 80; i++ {
				h.step(rng, i)
			}
			rep, err := fsys.Crash()
			if err != nil {
				t.Fatal(err)
			}
			got, want := h.tree(), h.snaps[h.durable]
			if !maps.Equal(got, want) {
				t.Fatalf("%s round %d: after the crash\n got  %v\n want %v (state after op %d of %d; %v)", model, round, got, want, h.durable, len(h.snaps)-1, rep)
			}
		}
	}
}

type nsHistory struct {
	t         *testing.T
	root      string
	model     crashfs.Model
	snaps     []map[string]string // snaps[k]: the tree after k namespace ops
	lastEntry map[uint64]int      // directory inode → last op changing its entries
	lastSelf  map[uint64]int      // inode → last op creating, moving or unlinking it
	durable   int                 // ops made durable so far
}

var (
	nsDirs  = []string{"", "x", "y", "x/y", "y/x"}
	nsNames = []string{"a", "x", "y"}
)

func (h *nsHistory) pick(rng *rand.Rand) string {
	return filepath.Join(nsDirs[rng.IntN(len(nsDirs))], nsNames[rng.IntN(len(nsNames))])
}

func (h *nsHistory) ino(rel string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(h.root, rel), &st); err != nil {
		return 0
	}
	return st.Ino
}

// op records a successful namespace op changing the entries of dirs and
// the inodes selves (0s are ignored), and snapshots the tree.
func (h *nsHistory) op(dirs []string, selves ...uint64) {
	k := len(h.snaps)
	for _, d := range dirs {
		h.lastEntry[h.ino(d)] = k
	}
	for _, s := range selves {
		if s != 0 {
			h.lastSelf[s] = k
		}
	}
	h.snaps = append(h.snaps, h.tree())
}

// fsynced applies the model: a directory fsync covers its entries; in
// Ordered any fsync also covers the inode's own last op.
func (h *nsHistory) fsynced(ino uint64, isDir bool) {
	upTo := 0
	if isDir {
		upTo = h.lastEntry[ino]
	}
	if h.model == crashfs.Ordered {
		upTo = max(upTo, h.lastSelf[ino])
	}
	h.durable = max(h.durable, upTo)
}

func (h *nsHistory) step(rng *rand.Rand, i int) {
	p := h.pick(rng)
	abs := filepath.Join(h.root, p)
	switch rng.IntN(7) {
	case 0, 1: // create a file with data, fsync it
		f, err := os.OpenFile(abs, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return
		}
		if _, err := f.WriteString("v" + strconv.Itoa(i)); err != nil {
			f.Close()
			h.t.Fatal(err)
		}
		ino := h.ino(p)
		h.op([]string{filepath.Dir(p)}, ino)
		fsync(h.t, f)
		h.fsynced(ino, false)
	case 2:
		if os.Mkdir(abs, 0o755) == nil {
			h.op([]string{filepath.Dir(p)}, h.ino(p))
		}
	case 3:
		dst := h.pick(rng)
		src, victim := h.ino(p), h.ino(dst)
		if os.Rename(abs, filepath.Join(h.root, dst)) == nil && src != victim {
			h.op([]string{filepath.Dir(p), filepath.Dir(dst)}, src, victim)
		}
	case 4:
		dst := h.pick(rng)
		if os.Link(abs, filepath.Join(h.root, dst)) == nil {
			h.op([]string{filepath.Dir(dst)}, h.ino(p))
		}
	case 5:
		ino := h.ino(p)
		if os.Remove(abs) == nil {
			h.op([]string{filepath.Dir(p)}, ino)
		}
	case 6: // fsync a file or directory (the root sometimes)
		if rng.IntN(4) == 0 {
			p, abs = "", h.root
		}
		f, err := os.Open(abs)
		if err != nil {
			return
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			h.t.Fatal(err)
		}
		ino := h.ino(p)
		fsync(h.t, f)
		h.fsynced(ino, st.IsDir())
	}
}

// tree maps every path to its content ("/" for a directory).
func (h *nsHistory) tree() map[string]string {
	out := map[string]string{}
	must(h.t, filepath.WalkDir(h.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == h.root {
			return err
		}
		rel, _ := filepath.Rel(h.root, p)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	}))
	return out
}
