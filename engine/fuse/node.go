package fuse

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/alcove-io/alcove/engine/vfs"
)

// node is a go-fuse inode for a VFS node: it translates each call to the
// VFS and its answer back to go-fuse types. Its inode number (= kernel
// node id) is the VFS node's.
type node struct {
	fs.Inode
	m  *mount
	v  *vfs.VFS
	vn *vfs.Node
}

// mount is what the nodes of one mount share.
type mount struct {
	// rebuilt are the go-fuse inodes LookupNode made while a handover is
	// restored (restore clears it).
	rebuiltMu sync.Mutex
	rebuilt   map[uint64]*fs.Inode
}

func (m *mount) restored(ino uint64) *fs.Inode {
	m.rebuiltMu.Lock()
	defer m.rebuiltMu.Unlock()
	return m.rebuilt[ino]
}

var (
	_ fs.InodeEmbedder   = (*node)(nil)
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeLookupNoder = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeReaddirer   = (*node)(nil)
	_ fs.NodeMkdirer     = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeUnlinker    = (*node)(nil)
	_ fs.NodeRmdirer     = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
	_ fs.NodeStatfser    = (*node)(nil)
	_ fs.NodeOnForgetter = (*node)(nil)
	_ fs.NodeSymlinker   = (*node)(nil)
	_ fs.NodeReadlinker  = (*node)(nil)
)

// caller is the process a request comes from.
func caller(ctx context.Context) vfs.Caller {
	if c, ok := gofuse.FromContext(ctx); ok {
		return vfs.Caller{Uid: c.Uid, Gid: c.Gid, Pid: c.Pid}
	}
	return vfs.Caller{}
}

func stableAttr(vn *vfs.Node) fs.StableAttr {
	return fs.StableAttr{Mode: vn.Type(), Ino: vn.Ino()}
}

// inode returns the go-fuse inode of vn (go-fuse keeps one per inode
// number: an existing one is returned).
func (n *node) inode(ctx context.Context, vn *vfs.Node) *fs.Inode {
	return n.NewInode(ctx, &node{m: n.m, v: n.v, vn: vn}, stableAttr(vn))
}

func fillAttr(a *vfs.Attr, out *gofuse.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Size = a.Size
	out.SetTimes(&a.Atime, &a.Mtime, &a.Ctime)
	out.Uid = a.Uid
	out.Gid = a.Gid
	out.Blksize = a.Blksize
	out.Blocks = a.Blocks
}

// OnForget drops a node the kernel no longer references.
func (n *node) OnForget() { n.v.Forget(n.vn) }

func (n *node) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var a vfs.Attr
	vn, e := n.v.Lookup(ctx, caller(ctx), n.vn, name, &a)
	return n.entry(ctx, vn, &a, e, out)
}

// entry answers an operation that returns a child node (lookup, mkdir,
// symlink) with its attributes.
func (n *node) entry(ctx context.Context, vn *vfs.Node, a *vfs.Attr, e syscall.Errno, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e != 0 {
		return nil, e
	}
	fillAttr(a, &out.Attr)
	return n.inode(ctx, vn), 0
}

// LookupNode serves a kernel node id unknown to go-fuse: after a handover
// the successor rebuilds the predecessor's nodes (restored in the VFS)
// this way.
func (n *node) LookupNode(ctx context.Context, id uint64, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	vn := n.v.Node(id)
	if vn == nil {
		return nil, syscall.ESTALE
	}
	sa := stableAttr(vn)
	out.Attr.Mode = sa.Mode | 0o644
	out.Attr.Ino = id
	in := n.inode(ctx, vn)
	n.m.rebuiltMu.Lock()
	n.m.rebuilt[id] = in
	n.m.rebuiltMu.Unlock()
	return in, 0
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *gofuse.AttrOut) syscall.Errno {
	var a vfs.Attr
	if e := n.v.Getattr(ctx, caller(ctx), n.vn, &a); e != 0 {
		return e
	}
	fillAttr(&a, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	var sa vfs.SetAttrIn
	if m, ok := in.GetMode(); ok {
		sa.Mode = &m
	}
	if uid, ok := in.GetUID(); ok {
		sa.Uid = &uid
	}
	if gid, ok := in.GetGID(); ok {
		sa.Gid = &gid
	}
	if mt, ok := in.GetMTime(); ok {
		ms := mt.UnixMilli()
		sa.Mtime = &ms
	}
	if at, ok := in.GetATime(); ok {
		ms := at.UnixMilli()
		sa.Atime = &ms
	}
	// utimensat(UTIME_NOW) needs only write permission; explicit times
	// need the owner.
	sa.TimesNow = in.Valid&(gofuse.FATTR_MTIME|gofuse.FATTR_ATIME) != 0 &&
		in.Valid&(gofuse.FATTR_MTIME|gofuse.FATTR_MTIME_NOW) != gofuse.FATTR_MTIME &&
		in.Valid&(gofuse.FATTR_ATIME|gofuse.FATTR_ATIME_NOW) != gofuse.FATTR_ATIME
	if sz, ok := in.GetSize(); ok {
		sa.Size = &sz
	}
	if h, ok := fh.(*fileHandle); ok {
		sa.Handle = h.h
	}
	var a vfs.Attr
	if e := n.v.Setattr(ctx, caller(ctx), n.vn, sa, &a); e != 0 {
		return e
	}
	fillAttr(&a, &out.Attr)
	return 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, e := n.v.Readdir(ctx, caller(ctx), n.vn)
	if e != 0 {
		return nil, e
	}
	out := make([]gofuse.DirEntry, len(ents))
	for i, ent := range ents {
		out[i] = gofuse.DirEntry{Name: ent.Name, Mode: ent.Type, Ino: ent.Ino}
	}
	return &dirStream{DirStream: fs.NewListDirStream(out), done: func() { n.v.DoneListing(n.vn) }}, 0
}

// dirStream drops the VFS's listing of the directory when the kernel
// closes the directory handle (RELEASEDIR).
type dirStream struct {
	fs.DirStream
	done func()
}

func (d *dirStream) Close() {
	d.DirStream.Close()
	d.done()
}

// Seekdir keeps rewinddir/seekdir working (the list stream supports it).
func (d *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if sd, ok := d.DirStream.(fs.FileSeekdirer); ok {
		return sd.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var a vfs.Attr
	vn, e := n.v.Mkdir(ctx, caller(ctx), n.vn, name, mode, &a)
	return n.entry(ctx, vn, &a, e, out)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *gofuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	var a vfs.Attr
	vn, h, fl, e := n.v.Create(ctx, caller(ctx), n.vn, name, flags, mode, &a)
	if e != 0 {
		return nil, nil, 0, e
	}
	fillAttr(&a, &out.Attr)
	fh, ffl := fileHandleOf(h, fl)
	return n.inode(ctx, vn), fh, ffl, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, fl, e := n.v.Open(ctx, caller(ctx), n.vn, flags)
	if e != 0 {
		return nil, 0, e
	}
	fh, ffl := fileHandleOf(h, fl)
	return fh, ffl, 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var a vfs.Attr
	vn, e := n.v.Symlink(ctx, caller(ctx), n.vn, name, target, &a)
	return n.entry(ctx, vn, &a, e, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, e := n.v.Readlink(ctx, caller(ctx), n.vn)
	if e != 0 {
		return nil, e
	}
	return []byte(t), 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.v.Unlink(ctx, caller(ctx), n.vn, name)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.v.Rmdir(ctx, caller(ctx), n.vn, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	return n.v.Rename(ctx, caller(ctx), n.vn, name, np.vn, newName, flags)
}

func (n *node) Statfs(ctx context.Context, out *gofuse.StatfsOut) syscall.Errno {
	var st vfs.Statfs
	if e := n.v.Statfs(ctx, &st); e != 0 {
		return e
	}
	out.Bsize, out.Frsize, out.NameLen = st.Bsize, st.Bsize, st.NameLen
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	return 0
}
