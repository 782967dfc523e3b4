package vfs

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestFSX replays the same random operation sequence on the VFS and on a
// plain local directory and compares every read and the final contents
// (in the spirit of fsx): writes at random offsets (holes included),
// appends, truncates, reads, fsync, close/reopen (commit), renames,
// unlinks, over a few files. engine/fuse runs it through a mount too.
func TestFSX(t *testing.T) {
	f := newTFS(t, nil)
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
	type pair struct {
		m *file
		l *os.File
	}
	open := map[int]*pair{}
	name := func(i int) string { return fmt.Sprintf("f%d", i) }
	same := func(what string, em syscall.Errno, el error) {
		t.Helper()
		if (em == 0) != (el == nil) {
			t.Fatalf("%s: vfs %v, local %v (seed %d)", what, errName(em), el, seed)
		}
	}
	reopen := func(i int, flags int) {
		if p := open[i]; p != nil {
			same("close "+name(i), p.m.close(), p.l.Close())
			delete(open, i)
		}
		if flags < 0 {
			return
		}
		m, em := f.open("/"+name(i), flags, 0o644)
		l, el := os.OpenFile(filepath.Join(local, name(i)), flags, 0o644)
		same(fmt.Sprintf("open %s flags %#x", name(i), flags), em, el)
		if em == 0 {
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
		m, em := f.readFile("/" + name(i))
		l, el := os.ReadFile(filepath.Join(local, name(i)))
		same(what+": read "+name(i), em, el)
		if !bytes.Equal(m, l) {
			j := 0
			for j < len(m) && j < len(l) && m[j] == l[j] {
				j++
			}
			t.Fatalf("%s: %s differs: vfs %d bytes, local %d, first difference at %d (seed %d)", what, name(i), len(m), len(l), j, seed)
		}
	}
	buf := make([]byte, 256<<10)
	for op := 0; op < ops; op++ {
		i := rng.Intn(nfiles)
		switch k := rng.Intn(100); {
		case k < 35: // write at a random offset, maybe past EOF
			p := get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(64<<10)
			rng.Read(buf[:n])
			_, el := p.l.WriteAt(buf[:n], off)
			same(fmt.Sprintf("op %d write %s [%d,+%d)", op, name(i), off, n), p.m.writeAt(buf[:n], off), el)
		case k < 45: // append through O_APPEND (the kernel writes at the size)
			reopen(i, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
			p := open[i]
			n := 1 + rng.Intn(32<<10)
			rng.Read(buf[:n])
			a, e := f.stat("/" + name(i))
			if e != 0 {
				t.Fatalf("op %d stat: %v", op, e)
			}
			_, el := p.l.Write(buf[:n])
			same(fmt.Sprintf("op %d append %s +%d", op, name(i), n), p.m.writeAt(buf[:n], int64(a.Size)), el)
			reopen(i, -1)
		case k < 70: // read a random range
			p := get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(len(buf)/2)
			mb, lb := make([]byte, n), make([]byte, n)
			nm, em := p.m.readAt(mb, off)
			nl, _ := p.l.ReadAt(lb, off)
			if nm != nl || em != 0 || !bytes.Equal(mb[:nm], lb[:nl]) {
				t.Fatalf("op %d read %s [%d,+%d): vfs %d %v, local %d (seed %d)", op, name(i), off, n, nm, errName(em), nl, seed)
			}
		case k < 78: // ftruncate
			p := get(i)
			size := uint64(rng.Int63n(maxSize))
			var a Attr
			em := f.v.Setattr(f.ctx, f.who, p.m.h.Node(), SetAttrIn{Size: &size, Handle: p.m.h}, &a)
			same(fmt.Sprintf("op %d truncate %s %d", op, name(i), size), em, p.l.Truncate(int64(size)))
		case k < 84: // fsync
			if p := open[i]; p != nil {
				if e := p.m.h.Fsync(f.ctx); e != 0 {
					t.Fatalf("op %d fsync %s: %v", op, name(i), e)
				}
			}
		case k < 94: // close (commit) and compare
			reopen(i, -1)
			compare(i, fmt.Sprintf("op %d close %s", op, name(i)))
		case k < 97: // rename over another file
			j := (i + 1) % nfiles
			reopen(i, -1)
			reopen(j, -1)
			root := f.v.Root()
			em := f.v.Rename(f.ctx, f.who, root, name(i), root, name(j), 0)
			el := os.Rename(filepath.Join(local, name(i)), filepath.Join(local, name(j)))
			same(fmt.Sprintf("op %d rename %s %s", op, name(i), name(j)), em, el)
		default: // unlink
			reopen(i, -1)
			em := f.v.Unlink(f.ctx, f.who, f.v.Root(), name(i))
			same(fmt.Sprintf("op %d unlink %s", op, name(i)), em, os.Remove(filepath.Join(local, name(i))))
		}
	}
	for i := 0; i < nfiles; i++ {
		reopen(i, -1)
		compare(i, "final")
	}
}
