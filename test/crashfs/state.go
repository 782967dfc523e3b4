package crashfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const (
	rootIno = 1
	// storeName is the directory in the backing directory that holds one
	// store file per regular-file inode; durable names are hard links to
	// them. It is rebuilt at every mount and hidden from the mount.
	storeName = ".crashfs-inodes"
)

// state is one "boot" of the filesystem: the live tree in memory over the
// durable state in the backing directory. A crash discards it.
type state struct {
	backing, store string
	log            *metaLog
	root           *dirNode
	ino            atomic.Uint64

	mu    sync.Mutex
	files map[uint64]*fileNode // every regular file of this boot, linked or not
	err   error                // first I/O error on the backing directory
}

func newState(backing string, model Model) *state {
	store := filepath.Join(backing, storeName)
	st := &state{backing: backing, store: store, log: newMetaLog(model, backing, store), files: map[uint64]*fileNode{}}
	st.ino.Store(rootIno)
	st.root = &dirNode{st: st, ino: rootIno}
	return st
}

func (st *state) newIno() uint64 { return st.ino.Add(1) }

func (st *state) storePath(ino uint64) string {
	return filepath.Join(st.store, strconv.FormatUint(ino, 10))
}

// fail records an I/O error of the backing directory (the first one is
// reported by Crash and Unmount) and returns EIO for the request.
func (st *state) fail(err error) syscall.Errno {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
	}
	return syscall.EIO
}

func (st *state) firstErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// newFile creates a regular-file inode with an empty store file.
func (st *state) newFile(a attrs) (*fileNode, error) {
	ino := st.newIno()
	p := st.storePath(ino)
	store, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create store file: %w", err)
	}
	if err := store.Chmod(unixMode(a.perm)); err != nil {
		store.Close()
		return nil, fmt.Errorf("chmod store file: %w", err)
	}
	return st.addFile(ino, a, newFileData(store, 0)), nil
}

func (st *state) addFile(ino uint64, a attrs, d *fileData) *fileNode {
	f := &fileNode{st: st, ino: ino, attrs: a, nlink: 1, data: d}
	st.mu.Lock()
	st.files[ino] = f
	st.mu.Unlock()
	return f
}

// load builds the live tree from the backing directory, which holds exactly
// the durable state: the store directory is rebuilt, so store files of
// inodes that had no durable name are gone.
func (st *state) load(ctx context.Context) error {
	if err := os.RemoveAll(st.store); err != nil {
		return fmt.Errorf("clear %s: %w", st.store, err)
	}
	if err := os.Mkdir(st.store, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", st.store, err)
	}
	var s syscall.Stat_t
	if err := syscall.Stat(st.backing, &s); err != nil {
		return fmt.Errorf("stat %s: %w", st.backing, err)
	}
	st.root.attrs = attrsFromStat(&s)
	return st.loadDir(ctx, st.backing, st.root, map[[2]uint64]*fileNode{})
}

func (st *state) loadDir(ctx context.Context, dirPath string, dir *dirNode, seen map[[2]uint64]*fileNode) error {
	ents, err := os.ReadDir(dirPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", dirPath, err)
	}
	for _, e := range ents {
		name := e.Name()
		if dir.ino == rootIno && name == storeName {
			continue
		}
		p := filepath.Join(dirPath, name)
		var s syscall.Stat_t
		if err := syscall.Lstat(p, &s); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		var child *fs.Inode
		switch s.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			n := &dirNode{st: st, ino: st.newIno(), attrs: attrsFromStat(&s)}
			child = dir.NewPersistentInode(ctx, n, fs.StableAttr{Mode: fuse.S_IFDIR, Ino: n.ino})
			st.log.ns.dirs[n.ino] = dirLoc{dir.ino, name}
			if err := st.loadDir(ctx, p, n, seen); err != nil {
				return err
			}
		case syscall.S_IFREG:
			key := [2]uint64{s.Dev, s.Ino}
			if f := seen[key]; f != nil {
				f.nlink++ // another name of a hard-linked file
				child = f.EmbeddedInode()
				break
			}
			f, err := st.adoptFile(p, &s)
			if err != nil {
				return err
			}
			seen[key] = f
			child = dir.NewPersistentInode(ctx, f, fs.StableAttr{Mode: fuse.S_IFREG, Ino: f.ino})
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
			l := &symlinkNode{ino: st.newIno(), target: target, attrs: attrsFromStat(&s)}
			child = dir.NewPersistentInode(ctx, l, fs.StableAttr{Mode: fuse.S_IFLNK, Ino: l.ino})
		default:
			return fmt.Errorf("crashfs: %s: unsupported file type %#o (files, directories and symlinks only)", p, s.Mode&syscall.S_IFMT)
		}
		dir.AddChild(name, child, false)
	}
	return nil
}

// adoptFile makes a durable file an inode of this boot: its store file is a
// new hard link to it.
func (st *state) adoptFile(p string, s *syscall.Stat_t) (*fileNode, error) {
	ino := st.newIno()
	sp := st.storePath(ino)
	if err := os.Link(p, sp); err != nil {
		return nil, fmt.Errorf("link %s into the store: %w", p, err)
	}
	store, err := os.OpenFile(sp, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return st.addFile(ino, attrsFromStat(s), newFileData(store, s.Size)), nil
}

// close releases the store files; the boot's unsynced state is gone.
func (st *state) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, f := range st.files {
		f.mu.Lock()
		f.data.store.Close()
		f.mu.Unlock()
	}
	st.files = nil
}

// walk calls fn for every name in the live tree, parents first.
func (st *state) walk(fn func(path string, n *fs.Inode)) {
	var rec func(dir string, n *fs.Inode)
	rec = func(dir string, n *fs.Inode) {
		for name, c := range n.Children() {
			p := filepath.Join(dir, name)
			fn(p, c)
			if c.IsDir() {
				rec(p, c)
			}
		}
	}
	rec("", st.root.EmbeddedInode())
}

// stats returns the counters of every live name (a hard-linked file appears
// under each of its names).
func (st *state) stats() map[string]FileStats {
	out := map[string]FileStats{}
	st.walk(func(p string, n *fs.Inode) {
		switch o := n.Operations().(type) {
		case *fileNode:
			o.mu.Lock()
			out[p] = FileStats{Fsyncs: o.attrs.fsyncs, Fdatasyncs: o.attrs.dsync, Unsynced: o.data.unsynced()}
			o.mu.Unlock()
		case *dirNode:
			o.mu.Lock()
			out[p] = FileStats{Fsyncs: o.attrs.fsyncs}
			o.mu.Unlock()
		}
	})
	return out
}
