// Package fsx replays one random sequence of file operations on a
// filesystem under test and on a reference (a local directory) and
// compares every result, every read and the final contents, in the spirit
// of fsx: writes at random offsets (holes included), appends, truncates
// (up: a hole at the end), reads, fsync, close/reopen (commit), renames,
// unlinks, unlinks of open files and renames over open files (the handles
// go on with the unlinked file), over a few files.
// engine/vfs runs it in process, engine/fuse through a mount.
package fsx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// FS is a filesystem as the replay uses it; names are plain file names.
type FS interface {
	// Open opens name with os.OpenFile flags (mode 0644 when created).
	Open(name string, flags int) (File, error)
	ReadFile(name string) ([]byte, error)
	Rename(from, to string) error
	Remove(name string) error
}

// File is an open file of an FS.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Append writes p at the end of a file opened with O_APPEND.
	Append(p []byte) error
	Truncate(size int64) error
	Sync() error
	Close() error
}

// Dir is the FS of a local directory (or a mount point).
func Dir(dir string) FS { return osFS(dir) }

type osFS string

type osFile struct{ *os.File }

func (f osFile) Append(p []byte) error { _, err := f.Write(p); return err }

func (d osFS) Open(name string, flags int) (File, error) {
	f, err := os.OpenFile(filepath.Join(string(d), name), flags, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (d osFS) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d osFS) Rename(from, to string) error {
	return os.Rename(filepath.Join(string(d), from), filepath.Join(string(d), to))
}

func (d osFS) Remove(name string) error { return os.Remove(filepath.Join(string(d), name)) }

// Ops is the number of operations: FSX_OPS, else 3000 (600 with -short).
// `make fsx` runs 10,000.
func Ops() int {
	if s := os.Getenv("FSX_OPS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	if testing.Short() {
		return 600
	}
	return 3000
}

// Run replays ops random operations (seed: FSX_SEED, default 42) on fs
// and ref.
func Run(t *testing.T, fs, ref FS, ops int) {
	t.Helper()
	seed := int64(42)
	if s := os.Getenv("FSX_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	r := &replay{t: t, fs: fs, ref: ref, seed: seed, rng: rand.New(rand.NewSource(seed)), open: map[int]*pair{}}
	r.run(ops)
}

const (
	nfiles  = 3
	maxSize = 3 << 20
)

type pair struct{ m, l File }

type replay struct {
	t       *testing.T
	fs, ref FS
	seed    int64
	rng     *rand.Rand
	open    map[int]*pair
}

func name(i int) string { return fmt.Sprintf("f%d", i) }

// same fails unless both sides succeeded or both failed.
func (r *replay) same(what string, em, el error) {
	r.t.Helper()
	if (em == nil) != (el == nil) {
		r.t.Fatalf("%s: under test %v, reference %v (seed %d)", what, em, el, r.seed)
	}
}

func (r *replay) reopen(i, flags int) {
	r.t.Helper()
	if p := r.open[i]; p != nil {
		r.same("close "+name(i), p.m.Close(), p.l.Close())
		delete(r.open, i)
	}
	if flags < 0 {
		return
	}
	m, em := r.fs.Open(name(i), flags)
	l, el := r.ref.Open(name(i), flags)
	r.same(fmt.Sprintf("open %s flags %#x", name(i), flags), em, el)
	if em == nil {
		r.open[i] = &pair{m, l}
	}
}

func (r *replay) get(i int) *pair {
	if r.open[i] == nil {
		r.reopen(i, os.O_RDWR|os.O_CREATE)
	}
	return r.open[i]
}

func (r *replay) compare(i int, what string) {
	r.t.Helper()
	m, em := r.fs.ReadFile(name(i))
	l, el := r.ref.ReadFile(name(i))
	r.same(what+": read "+name(i), em, el)
	Equal(r.t, fmt.Sprintf("%s: %s (seed %d)", what, name(i), r.seed), m, l)
}

// Equal fails t unless got equals want, naming the first difference.
func Equal(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: got %d bytes, want %d; first difference at %d", what, len(got), len(want), i)
	}
}

// noEOF drops io.EOF, which a short read may or may not report.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (r *replay) run(ops int) {
	rng := r.rng
	buf := make([]byte, 256<<10)
	for op := 0; op < ops; op++ {
		i := rng.Intn(nfiles)
		switch k := rng.Intn(100); {
		case k < 33: // write at a random offset, maybe past EOF (a hole)
			p := r.get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(64<<10)
			rng.Read(buf[:n])
			_, em := p.m.WriteAt(buf[:n], off)
			_, el := p.l.WriteAt(buf[:n], off)
			r.same(fmt.Sprintf("op %d write %s [%d,+%d)", op, name(i), off, n), em, el)
		case k < 42: // append through O_APPEND
			r.reopen(i, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
			p := r.open[i]
			n := 1 + rng.Intn(32<<10)
			rng.Read(buf[:n])
			r.same(fmt.Sprintf("op %d append %s +%d", op, name(i), n), p.m.Append(buf[:n]), p.l.Append(buf[:n]))
			r.reopen(i, -1)
		case k < 64: // read a random range
			p := r.get(i)
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(len(buf)/2)
			mb, lb := make([]byte, n), make([]byte, n)
			nm, em := p.m.ReadAt(mb, off)
			nl, el := p.l.ReadAt(lb, off)
			if em, el = noEOF(em), noEOF(el); nm != nl || em != nil || el != nil || !bytes.Equal(mb[:nm], lb[:nl]) {
				r.t.Fatalf("op %d read %s [%d,+%d): under test %d %v, reference %d %v (seed %d)", op, name(i), off, n, nm, em, nl, el, r.seed)
			}
		case k < 70: // ftruncate
			p := r.get(i)
			size := rng.Int63n(maxSize)
			r.same(fmt.Sprintf("op %d truncate %s %d", op, name(i), size), p.m.Truncate(size), p.l.Truncate(size))
		case k < 74: // ftruncate up: a hole at the end
			p := r.get(i)
			size := maxSize + rng.Int63n(maxSize)
			r.same(fmt.Sprintf("op %d truncate up %s %d", op, name(i), size), p.m.Truncate(size), p.l.Truncate(size))
		case k < 79: // fsync
			if p := r.open[i]; p != nil {
				if err := p.m.Sync(); err != nil {
					r.t.Fatalf("op %d fsync %s: %v", op, name(i), err)
				}
			}
		case k < 88: // close (commit) and compare
			r.reopen(i, -1)
			r.compare(i, fmt.Sprintf("op %d close %s", op, name(i)))
		case k < 91: // rename over another file
			j := (i + 1) % nfiles
			r.reopen(i, -1)
			r.reopen(j, -1)
			r.same(fmt.Sprintf("op %d rename %s %s", op, name(i), name(j)), r.fs.Rename(name(i), name(j)), r.ref.Rename(name(i), name(j)))
		case k < 93: // unlink
			r.reopen(i, -1)
			r.same(fmt.Sprintf("op %d unlink %s", op, name(i)), r.fs.Remove(name(i)), r.ref.Remove(name(i)))
		case k < 97: // unlink while open: the handle goes on with the unlinked file
			r.get(i)
			r.same(fmt.Sprintf("op %d unlink open %s", op, name(i)), r.fs.Remove(name(i)), r.ref.Remove(name(i)))
		default: // rename over an open file: its handle goes on with the replaced one
			j := (i + 1) % nfiles
			r.get(j)
			r.same(fmt.Sprintf("op %d rename %s over open %s", op, name(i), name(j)), r.fs.Rename(name(i), name(j)), r.ref.Rename(name(i), name(j)))
		}
	}
	for i := 0; i < nfiles; i++ {
		r.reopen(i, -1)
		r.compare(i, "final")
	}
}
