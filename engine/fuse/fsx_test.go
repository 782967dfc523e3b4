package fuse

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestFSX replays the same random operation sequence on the mount and on a
// plain local directory and compares every read and the final contents
// (in the spirit of fsx): writes at random offsets (holes included),
// appends, truncates, reads, fsync, close/reopen (commit), renames,
// unlinks, over a few files.
func TestFSX(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	ops := 3000
	if testing.Short() {
		ops = 600
	}
	seed := int64(42)
	if s := os.Getenv("FSX_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	local := t.TempDir()
	rng := rand.New(rand.NewSource(seed))
	const nfiles = 3
	const maxSize = 3 << 20
	type pair struct{ m, l *os.File }
	open := map[int]*pair{}
	name := func(i int) string { return fmt.Sprintf("f%d", i) }
	reopen := func(i int, flags int) {
		if p := open[i]; p != nil {
			em, el := p.m.Close(), p.l.Close()
			if (em == nil) != (el == nil) {
				t.Fatalf("close %s: mount %v, local %v", name(i), em, el)
			}
			delete(open, i)
		}
		if flags < 0 {
			return
		}
		m, em := os.OpenFile(filepath.Join(e.mnt, name(i)), flags, 0o644)
		l, el := os.OpenFile(filepath.Join(local, name(i)), flags, 0o644)
		if (em == nil) != (el == nil) {
			t.Fatalf("open %s flags %#x: mount %v, local %v", name(i), flags, em, el)
		}
		if em == nil {
			open[i] = &pair{m, l}
		}
	}
	get := func(i int) *pair {
		if open[i] == nil {
			reopen(i, os.O_RDWR|os.O_CREATE)
		}
		return open[i]
	}
	compare := func(i int, what string) {
		m, em := os.ReadFile(filepath.Join(e.mnt, name(i)))
		l, el := os.ReadFile(filepath.Join(local, name(i)))
		if (em == nil) != (el == nil) {
			t.Fatalf("%s: read %s: mount %v, local %v", what, name(i), em, el)
		}
		if !bytes.Equal(m, l) {
			j := 0
			for j < len(m) && j < len(l) && m[j] == l[j] {
				j++
			}
			t.Fatalf("%s: %s differs: mount %d bytes, local %d, first difference at %d (seed %d)", what, name(i), len(m), len(l), j, seed)
		}
	}
	buf := make([]byte, 256<<10)
	for op := 0; op < ops; op++ {
		i := rng.Intn(nfiles)
		what := ""
		switch k := rng.Intn(100); {
		case k < 35: // write at a random offset, maybe past EOF
			p := get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(64<<10)
			rng.Read(buf[:n])
			what = fmt.Sprintf("write %s [%d,+%d)", name(i), off, n)
			_, em := p.m.WriteAt(buf[:n], off)
			_, el := p.l.WriteAt(buf[:n], off)
			if (em == nil) != (el == nil) {
				t.Fatalf("op %d %s: mount %v, local %v", op, what, em, el)
			}
		case k < 45: // append through O_APPEND
			reopen(i, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
			p := open[i]
			n := 1 + rng.Intn(32<<10)
			rng.Read(buf[:n])
			what = fmt.Sprintf("append %s +%d", name(i), n)
			_, em := p.m.Write(buf[:n])
			_, el := p.l.Write(buf[:n])
			if (em == nil) != (el == nil) {
				t.Fatalf("op %d %s: mount %v, local %v", op, what, em, el)
			}
			reopen(i, -1)
		case k < 70: // read a random range
			p := get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(len(buf)/2)
			what = fmt.Sprintf("read %s [%d,+%d)", name(i), off, n)
			mb, lb := make([]byte, n), make([]byte, n)
			nm, em := p.m.ReadAt(mb, off)
			nl, el := p.l.ReadAt(lb, off)
			if nm != nl || (em == nil) != (el == nil) || (em != nil && em != io.EOF) || !bytes.Equal(mb[:nm], lb[:nl]) {
				t.Fatalf("op %d %s: mount %d %v, local %d %v (seed %d)", op, what, nm, em, nl, el, seed)
			}
		case k < 78: // ftruncate
			p := get(i)
			size := rng.Int63n(maxSize)
			what = fmt.Sprintf("truncate %s %d", name(i), size)
			em, el := p.m.Truncate(size), p.l.Truncate(size)
			if (em == nil) != (el == nil) {
				t.Fatalf("op %d %s: mount %v, local %v", op, what, em, el)
			}
		case k < 84: // fsync
			if p := open[i]; p != nil {
				what = "fsync " + name(i)
				if err := p.m.Sync(); err != nil {
					t.Fatalf("op %d %s: %v", op, what, err)
				}
			}
		case k < 94: // close (commit) and compare
			what = "close " + name(i)
			reopen(i, -1)
			compare(i, fmt.Sprintf("op %d %s", op, what))
		case k < 97: // rename over another file
			j := (i + 1) % nfiles
			reopen(i, -1)
			reopen(j, -1)
			what = fmt.Sprintf("rename %s %s", name(i), name(j))
			em := os.Rename(filepath.Join(e.mnt, name(i)), filepath.Join(e.mnt, name(j)))
			el := os.Rename(filepath.Join(local, name(i)), filepath.Join(local, name(j)))
			if (em == nil) != (el == nil) {
				t.Fatalf("op %d %s: mount %v, local %v", op, what, em, el)
			}
		default: // unlink
			reopen(i, -1)
			what = "unlink " + name(i)
			em := os.Remove(filepath.Join(e.mnt, name(i)))
			el := os.Remove(filepath.Join(local, name(i)))
			if (em == nil) != (el == nil) {
				t.Fatalf("op %d %s: mount %v, local %v", op, what, em, el)
			}
		}
		_ = what
	}
	for i := 0; i < nfiles; i++ {
		reopen(i, -1)
		compare(i, "final")
	}
}
