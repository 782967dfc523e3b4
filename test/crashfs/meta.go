package crashfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// metaOp is one namespace or attribute change not yet durable. apply
// replays it on the backing directory.
type metaOp struct {
	seq   uint64
	desc  string
	apply func(d *durableNS) error
}

// durableNS knows where each durable directory is in the backing directory
// (directories are found by walking parent links, so a renamed directory
// moves its subtree).
type durableNS struct {
	backing string
	store   string // backing/storeName: one file per regular-file inode
	dirs    map[uint64]dirLoc
}

type dirLoc struct {
	parent uint64
	name   string
}

func (d *durableNS) dirPath(ino uint64) string {
	if ino == rootIno {
		return d.backing
	}
	loc, ok := d.dirs[ino]
	if !ok {
		// Replay is a prefix of the live history, so the directory exists;
		// a miss is a bug in crashfs, reported by the failing syscall.
		return filepath.Join(d.backing, "<unknown dir "+strconv.FormatUint(ino, 10)+">")
	}
	return filepath.Join(d.dirPath(loc.parent), loc.name)
}

func (d *durableNS) entry(dir uint64, name string) string {
	return filepath.Join(d.dirPath(dir), name)
}

func (d *durableNS) storeFile(ino uint64) string {
	return filepath.Join(d.store, strconv.FormatUint(ino, 10))
}

// metaLog orders namespace operations like a filesystem journal: an op
// becomes durable with every op before it, when an fsync triggers it.
type metaLog struct {
	model Model

	mu        sync.Mutex
	ns        durableNS
	pending   []metaOp
	seq       uint64
	lastSelf  map[uint64]uint64 // inode → last op that created, renamed, linked, unlinked or chmod-ed it
	lastEntry map[uint64]uint64 // directory → last op that changed its entries
	err       error             // first failed replay: the durable state no longer follows
	done      int               // ops made durable (diagnostics)
}

func newMetaLog(model Model, backing, store string) *metaLog {
	return &metaLog{
		model:     model,
		ns:        durableNS{backing: backing, store: store, dirs: map[uint64]dirLoc{}},
		lastSelf:  map[uint64]uint64{},
		lastEntry: map[uint64]uint64{},
	}
}

// add appends an op that changes the entries of dirs and the inodes selves.
func (l *metaLog) add(desc string, dirs, selves []uint64, apply func(d *durableNS) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.pending = append(l.pending, metaOp{seq: l.seq, desc: desc, apply: apply})
	for _, d := range dirs {
		l.lastEntry[d] = l.seq
	}
	for _, s := range selves {
		l.lastSelf[s] = l.seq
	}
}

// fsynced makes durable what an fsync of ino makes durable under the model:
// the entries of a directory, and (Ordered) the inode's own name changes,
// each with every op before it.
func (l *metaLog) fsynced(ino uint64, isDir bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	upTo := uint64(0)
	if isDir {
		upTo = l.lastEntry[ino]
	}
	if l.model == Ordered {
		upTo = max(upTo, l.lastSelf[ino])
	}
	return l.persistLocked(upTo)
}

func (l *metaLog) persistLocked(upTo uint64) error {
	if l.err != nil {
		return l.err
	}
	n := 0
	for n < len(l.pending) && l.pending[n].seq <= upTo {
		op := l.pending[n]
		if err := op.apply(&l.ns); err != nil {
			l.err = fmt.Errorf("crashfs: replay %s on the backing directory: %w", op.desc, err)
			return l.err
		}
		n++
	}
	l.done += n
	l.pending = l.pending[n:]
	return nil
}

// failed returns the first replay failure.
func (l *metaLog) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// dropped lists the ops a crash now loses.
func (l *metaLog) dropped() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.pending))
	for i, op := range l.pending {
		out[i] = op.desc
	}
	return out
}

// The ops. Each records, for a later replay, what it did to the live tree.

func (l *metaLog) mkdir(parent uint64, name string, ino uint64, mode uint32) {
	l.add(fmt.Sprintf("mkdir %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		p := d.entry(parent, name)
		if err := os.Mkdir(p, os.FileMode(mode&0o777)); err != nil {
			return err
		}
		d.dirs[ino] = dirLoc{parent, name}
		return os.Chmod(p, unixMode(mode))
	})
}

func (l *metaLog) create(parent uint64, name string, ino uint64) {
	l.add(fmt.Sprintf("create %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		return os.Link(d.storeFile(ino), d.entry(parent, name))
	})
}

func (l *metaLog) link(parent uint64, name string, ino uint64) {
	l.add(fmt.Sprintf("link %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		return os.Link(d.storeFile(ino), d.entry(parent, name))
	})
}

func (l *metaLog) symlink(parent uint64, name string, ino uint64, target string) {
	l.add(fmt.Sprintf("symlink %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		return os.Symlink(target, d.entry(parent, name))
	})
}

func (l *metaLog) unlink(parent uint64, name string, ino uint64) {
	l.add(fmt.Sprintf("unlink %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		return os.Remove(d.entry(parent, name))
	})
}

func (l *metaLog) rmdir(parent uint64, name string, ino uint64) {
	l.add(fmt.Sprintf("rmdir %d/%s", parent, name), []uint64{parent}, []uint64{ino}, func(d *durableNS) error {
		if err := os.Remove(d.entry(parent, name)); err != nil {
			return err
		}
		delete(d.dirs, ino)
		return nil
	})
}

// renamed describes one side of a rename for the durable directory table.
type renamed struct {
	ino   uint64
	isDir bool
}

// rename moves src (p1/n1) to p2/n2. dst is what was at p2/n2 (ino 0 if
// nothing): replaced, or swapped with RENAME_EXCHANGE.
func (l *metaLog) rename(p1 uint64, n1 string, p2 uint64, n2 string, flags uint32, src, dst renamed) {
	selves := []uint64{src.ino}
	if dst.ino != 0 {
		selves = append(selves, dst.ino)
	}
	desc := fmt.Sprintf("rename %d/%s -> %d/%s (flags %#x)", p1, n1, p2, n2, flags)
	l.add(desc, []uint64{p1, p2}, selves, func(d *durableNS) error {
		if err := unix.Renameat2(unix.AT_FDCWD, d.entry(p1, n1), unix.AT_FDCWD, d.entry(p2, n2), uint(flags)); err != nil {
			return err
		}
		if src.isDir {
			d.dirs[src.ino] = dirLoc{p2, n2}
		}
		switch {
		case dst.isDir && flags&unix.RENAME_EXCHANGE != 0:
			d.dirs[dst.ino] = dirLoc{p1, n1}
		case dst.isDir:
			delete(d.dirs, dst.ino)
		}
		return nil
	})
}

// setattr records a mode or owner change of a file (through its store
// file, whatever its names) or directory.
func (l *metaLog) setattr(ino uint64, isDir bool, mode *uint32, uid, gid *uint32) {
	l.add(fmt.Sprintf("setattr %d", ino), nil, []uint64{ino}, func(d *durableNS) error {
		p := d.storeFile(ino)
		if isDir {
			p = d.dirPath(ino)
		}
		if mode != nil {
			if err := os.Chmod(p, unixMode(*mode)); err != nil {
				return err
			}
		}
		if uid != nil || gid != nil {
			u, g := -1, -1
			if uid != nil {
				u = int(*uid)
			}
			if gid != nil {
				g = int(*gid)
			}
			return os.Lchown(p, u, g)
		}
		return nil
	})
}

// unixMode converts permission bits (with setuid, setgid, sticky) to an
// os.FileMode for os.Chmod.
func unixMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
