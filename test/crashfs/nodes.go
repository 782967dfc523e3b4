package crashfs

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// attrs are the attributes every node keeps in memory. Mode and owner
// changes go through the metadata log; times are live only.
type attrs struct {
	perm          uint32 // permission bits with setuid, setgid, sticky
	uid, gid      uint32
	atime, mtime  time.Time
	ctime         time.Time
	fsyncs, dsync uint64 // fsync and fdatasync requests seen (diagnostics)
}

func newAttrs(ctx context.Context, perm uint32) attrs {
	now := time.Now()
	a := attrs{perm: perm & 0o7777, atime: now, mtime: now, ctime: now}
	if c, ok := fuse.FromContext(ctx); ok {
		a.uid, a.gid = c.Uid, c.Gid
	}
	return a
}

func attrsFromStat(st *syscall.Stat_t) attrs {
	return attrs{
		perm: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid,
		atime: time.Unix(st.Atim.Unix()), mtime: time.Unix(st.Mtim.Unix()), ctime: time.Unix(st.Ctim.Unix()),
	}
}

func (a *attrs) fill(out *fuse.Attr, ino uint64, typ uint32) {
	out.Ino = ino
	out.Mode = typ | a.perm
	out.Owner = fuse.Owner{Uid: a.uid, Gid: a.gid}
	out.SetTimes(&a.atime, &a.mtime, &a.ctime)
	out.Blksize = pageSize
}

// set applies a SETATTR's mode, owner and times; mode and owner changes are
// also logged so that they become durable like other metadata.
func (a *attrs) set(log *metaLog, ino uint64, isDir bool, in *fuse.SetAttrIn) {
	now := time.Now()
	var mode, uid, gid *uint32
	if m, ok := in.GetMode(); ok {
		m &= 0o7777
		a.perm, mode = m, &m
	}
	if u, ok := in.GetUID(); ok {
		a.uid, uid = u, &u
	}
	if g, ok := in.GetGID(); ok {
		a.gid, gid = g, &g
	}
	if mode != nil || uid != nil || gid != nil {
		log.setattr(ino, isDir, mode, uid, gid)
		a.ctime = now
	}
	if t, ok := in.GetATime(); ok {
		a.atime = t
	}
	if t, ok := in.GetMTime(); ok {
		a.mtime, a.ctime = t, now
	}
}

// fileNode is a regular file.
type fileNode struct {
	fs.Inode
	st  *state
	ino uint64

	mu    sync.Mutex
	attrs attrs
	nlink uint32
	data  *fileData
}

var (
	_ fs.NodeOpener     = (*fileNode)(nil)
	_ fs.NodeReader     = (*fileNode)(nil)
	_ fs.NodeWriter     = (*fileNode)(nil)
	_ fs.NodeGetattrer  = (*fileNode)(nil)
	_ fs.NodeSetattrer  = (*fileNode)(nil)
	_ fs.NodeFsyncer    = (*fileNode)(nil)
	_ fs.NodeFlusher    = (*fileNode)(nil)
	_ fs.NodeAllocater  = (*fileNode)(nil)
	_ fs.NodeLseeker    = (*fileNode)(nil)
	_ fs.NodeStatfser   = (*fileNode)(nil)
	_ fs.NodeGetattrer  = (*dirNode)(nil)
	_ fs.NodeSetattrer  = (*dirNode)(nil)
	_ fs.NodeFsyncer    = (*dirNode)(nil)
	_ fs.NodeStatfser   = (*dirNode)(nil)
	_ fs.NodeReadlinker = (*symlinkNode)(nil)
	_ fs.NodeGetattrer  = (*symlinkNode)(nil)
)

// Open returns no handle and no flags: reads and writes go through the
// page cache (no FOPEN_DIRECT_IO), so mmap works, as bbolt needs.
func (f *fileNode) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, 0
}

func (f *fileNode) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.data.readAt(dest, off)
	if err != nil {
		return nil, f.st.fail(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *fileNode) Write(_ context.Context, _ fs.FileHandle, p []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.data.writeAt(p, off); err != nil {
		return 0, f.st.fail(err)
	}
	f.attrs.mtime = time.Now()
	f.attrs.ctime = f.attrs.mtime
	return uint32(len(p)), 0
}

func (f *fileNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fillLocked(&out.Attr)
	return 0
}

func (f *fileNode) fillLocked(out *fuse.Attr) {
	f.attrs.fill(out, f.ino, fuse.S_IFREG)
	out.Size = uint64(f.data.size)
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = f.nlink
}

func (f *fileNode) Setattr(_ context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sz, ok := in.GetSize(); ok {
		f.data.truncate(int64(sz))
		f.attrs.mtime = time.Now()
	}
	f.attrs.set(f.st.log, f.ino, false, in)
	f.fillLocked(&out.Attr)
	return 0
}

// Fsync makes the file's data durable (fsync and fdatasync alike: the size
// is data here), then what the model ties to it in the metadata log.
func (f *fileNode) Fsync(_ context.Context, _ fs.FileHandle, flags uint32) syscall.Errno {
	f.mu.Lock()
	err := f.data.sync()
	if flags&fsyncFdatasync != 0 {
		f.attrs.dsync++
	} else {
		f.attrs.fsyncs++
	}
	f.mu.Unlock()
	if err != nil {
		return f.st.fail(err)
	}
	if err := f.st.log.fsynced(f.ino, false); err != nil {
		return f.st.fail(err)
	}
	return 0
}

// Flush (close) makes nothing durable.
func (f *fileNode) Flush(context.Context, fs.FileHandle) syscall.Errno { return 0 }

// Allocate supports preallocation (mode 0 extends the size; KEEP_SIZE
// alone changes nothing visible) and hole punching (PUNCH_HOLE|KEEP_SIZE,
// as the worker's block store does); other modes are refused.
func (f *fileNode) Allocate(_ context.Context, _ fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch mode {
	case 0:
		if end := int64(off + size); end > f.data.size {
			f.data.truncate(end)
		}
	case unix.FALLOC_FL_KEEP_SIZE:
	case unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE:
		if err := f.data.punch(int64(off), int64(size)); err != nil {
			return f.st.fail(err)
		}
	default:
		return syscall.EOPNOTSUPP
	}
	f.attrs.mtime = time.Now()
	f.attrs.ctime = f.attrs.mtime
	return 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE (the kernel handles the others)
// from the live view's holes: punched pages, unwritten ranges.
func (f *fileNode) Lseek(_ context.Context, _ fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pos, err := f.data.seek(int64(off), int(whence))
	if errors.Is(err, unix.ENXIO) {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, f.st.fail(err)
	}
	return uint64(pos), 0
}

func (f *fileNode) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	return f.st.statfs(out)
}

// dirNode is a directory; its entries are the fs.Inode children.
type dirNode struct {
	fs.Inode
	st  *state
	ino uint64

	mu    sync.Mutex
	attrs attrs
}

var (
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeSymlinker = (*dirNode)(nil)
	_ fs.NodeLinker    = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
)

func (d *dirNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attrs.fill(&out.Attr, d.ino, fuse.S_IFDIR)
	out.Nlink = 2
	return 0
}

func (d *dirNode) Setattr(_ context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attrs.set(d.st.log, d.ino, true, in)
	d.attrs.fill(&out.Attr, d.ino, fuse.S_IFDIR)
	out.Nlink = 2
	return 0
}

// Fsync on a directory (FUSE_FSYNCDIR) makes its entry changes durable.
func (d *dirNode) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno {
	d.mu.Lock()
	d.attrs.fsyncs++
	d.mu.Unlock()
	if err := d.st.log.fsynced(d.ino, true); err != nil {
		return d.st.fail(err)
	}
	return 0
}

func (d *dirNode) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.st.statfs(out)
}

// checkNew is the check every entry-creating op makes. The kernel holds the
// directory's lock across the op, so the answer stays true until the
// bridge adds the child.
func (d *dirNode) checkNew(name string) syscall.Errno {
	if d.ino == rootIno && name == storeName {
		return syscall.EPERM
	}
	if d.GetChild(name) != nil {
		return syscall.EEXIST
	}
	return 0
}

func (d *dirNode) touch() {
	d.mu.Lock()
	d.attrs.mtime = time.Now()
	d.attrs.ctime = d.attrs.mtime
	d.mu.Unlock()
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := d.checkNew(name); errno != 0 {
		return nil, errno
	}
	child := &dirNode{st: d.st, ino: d.st.newIno(), attrs: newAttrs(ctx, mode)}
	in := d.NewPersistentInode(ctx, child, fs.StableAttr{Mode: fuse.S_IFDIR, Ino: child.ino})
	d.st.log.mkdir(d.ino, name, child.ino, child.attrs.perm)
	d.touch()
	child.attrs.fill(&out.Attr, child.ino, fuse.S_IFDIR)
	return in, 0
}

func (d *dirNode) Create(ctx context.Context, name string, _ uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := d.checkNew(name); errno != 0 {
		return nil, nil, 0, errno
	}
	f, err := d.st.newFile(newAttrs(ctx, mode))
	if err != nil {
		return nil, nil, 0, d.st.fail(err)
	}
	in := d.NewPersistentInode(ctx, f, fs.StableAttr{Mode: fuse.S_IFREG, Ino: f.ino})
	d.st.log.create(d.ino, name, f.ino)
	d.touch()
	f.mu.Lock()
	f.fillLocked(&out.Attr)
	f.mu.Unlock()
	return in, nil, 0, 0
}

func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := d.checkNew(name); errno != 0 {
		return nil, errno
	}
	l := &symlinkNode{ino: d.st.newIno(), target: target, attrs: newAttrs(ctx, 0o777)}
	in := d.NewPersistentInode(ctx, l, fs.StableAttr{Mode: fuse.S_IFLNK, Ino: l.ino})
	d.st.log.symlink(d.ino, name, l.ino, target)
	d.touch()
	l.fill(&out.Attr)
	return in, 0
}

// Link adds a name for a regular file (hard links to symlinks are refused:
// crashfs keeps a store file only for regular files).
func (d *dirNode) Link(_ context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f, ok := target.(*fileNode)
	if !ok {
		return nil, syscall.EPERM
	}
	if errno := d.checkNew(name); errno != 0 {
		return nil, errno
	}
	f.mu.Lock()
	f.nlink++
	f.attrs.ctime = time.Now()
	f.fillLocked(&out.Attr)
	f.mu.Unlock()
	d.st.log.link(d.ino, name, f.ino)
	d.touch()
	return f.EmbeddedInode(), 0
}

func (d *dirNode) Unlink(_ context.Context, name string) syscall.Errno {
	child := d.GetChild(name)
	if child == nil {
		return syscall.ENOENT
	}
	if child.IsDir() {
		return syscall.EISDIR
	}
	dropLink(child)
	d.st.log.unlink(d.ino, name, child.StableAttr().Ino)
	d.touch()
	return 0
}

func (d *dirNode) Rmdir(_ context.Context, name string) syscall.Errno {
	child := d.GetChild(name)
	switch {
	case child == nil:
		return syscall.ENOENT
	case !child.IsDir():
		return syscall.ENOTDIR
	case len(child.Children()) > 0:
		return syscall.ENOTEMPTY
	}
	d.st.log.rmdir(d.ino, name, child.StableAttr().Ino)
	d.touch()
	return 0
}

func (d *dirNode) Rename(_ context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	const noReplace, exchange = 0x1, 0x2 // RENAME_NOREPLACE, RENAME_EXCHANGE
	np, ok := newParent.(*dirNode)
	if !ok {
		return syscall.ENOTDIR
	}
	if flags&^(noReplace|exchange) != 0 || flags == noReplace|exchange {
		return syscall.EINVAL
	}
	if np.ino == rootIno && newName == storeName {
		return syscall.EPERM
	}
	src := d.GetChild(name)
	if src == nil {
		return syscall.ENOENT
	}
	dst := np.GetChild(newName)
	switch {
	case flags&exchange != 0 && dst == nil:
		return syscall.ENOENT
	case dst == nil || flags&exchange != 0:
	case flags&noReplace != 0:
		return syscall.EEXIST
	case src.IsDir() && !dst.IsDir():
		return syscall.ENOTDIR
	case !src.IsDir() && dst.IsDir():
		return syscall.EISDIR
	case dst.IsDir() && len(dst.Children()) > 0:
		return syscall.ENOTEMPTY
	}
	var dr renamed
	if dst != nil {
		dr = renamed{ino: dst.StableAttr().Ino, isDir: dst.IsDir()}
		if flags&exchange == 0 {
			dropLink(dst)
		}
	}
	d.st.log.rename(d.ino, name, np.ino, newName, flags, renamed{ino: src.StableAttr().Ino, isDir: src.IsDir()}, dr)
	d.touch()
	if np != d {
		np.touch()
	}
	return 0
}

// dropLink decrements a removed file's link count.
func dropLink(n *fs.Inode) {
	if f, ok := n.Operations().(*fileNode); ok {
		f.mu.Lock()
		f.nlink--
		f.attrs.ctime = time.Now()
		f.mu.Unlock()
	}
}

// symlinkNode is a symbolic link; it cannot change after creation.
type symlinkNode struct {
	fs.Inode
	ino    uint64
	target string
	attrs  attrs
}

func (l *symlinkNode) Readlink(context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target), 0
}

func (l *symlinkNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fill(&out.Attr)
	return 0
}

func (l *symlinkNode) fill(out *fuse.Attr) {
	l.attrs.fill(out, l.ino, fuse.S_IFLNK)
	out.Size = uint64(len(l.target))
	out.Nlink = 1
}

// statfs reports the backing filesystem's numbers.
func (st *state) statfs(out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(st.backing, &s); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC: the fsync request is an fdatasync.
const fsyncFdatasync = 0x1
