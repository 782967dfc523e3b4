package fuse

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// node is a file or directory of the mount. Its inode number is the
// Alcove file id it was first seen with, and stays while the kernel knows
// it, even when a commit gives the file a new id.
type node struct {
	fs.Inode
	fsys *filesystem
	dir  bool

	openMu sync.Mutex // serializes opens
	mu     sync.Mutex
	fileID int64  // current Alcove file id
	stage  *stage // written, possibly uncommitted content
	// openPassthrough / openCached count open handles by kernel io mode:
	// the kernel refuses to mix passthrough and page-cache opens of one
	// inode, so the other kind is opened FOPEN_DIRECT_IO meanwhile.
	openPassthrough int
	openCached      int
	pt              *client.LocalFile // leased cache file while openPassthrough > 0
	releasing       int               // releases in their grace period (afterRelease)
	// cachedVersion is the (file id, length, mtime) last served with
	// FOPEN_KEEP_CACHE; a change drops the kernel's page cache.
	cachedVersion string
	// restorePath is the path a handed-over node had, used while the
	// tree above it is not rebuilt.
	restorePath atomic.Pointer[string]
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
)

// commitPrefix names the temporary files a commit writes before renaming
// them over the target; readdir hides them.
const commitPrefix = ".alcove-fuse-commit-"

// path is the node's Alcove path.
func (n *node) path() string {
	if n == n.fsys.root {
		return n.fsys.cfg.Root
	}
	rel := n.Path(n.Root())
	if strings.HasPrefix(rel, ".go-fuse.") || strings.Contains(rel, "/.go-fuse.") {
		if rp := n.restorePath.Load(); rp != nil {
			return *rp
		}
	}
	return meta.Join(n.fsys.cfg.Root, rel)
}

func (n *node) child(name string) string { return meta.Join(n.path(), name) }

func (n *node) newChild(ctx context.Context, info *apiv1.FileInfo) *fs.Inode {
	mode := uint32(syscall.S_IFREG)
	if info.GetFolder() {
		mode = syscall.S_IFDIR
	}
	ch := &node{fsys: n.fsys, dir: info.GetFolder(), fileID: info.GetFileId()}
	in := n.NewInode(ctx, ch, fs.StableAttr{Mode: mode, Ino: ino(info)})
	n.fsys.track(in.Operations().(*node))
	return in
}

// OnForget drops a node the kernel no longer references.
func (n *node) OnForget() { n.fsys.untrack(n) }

// existingChild returns the kernel-known node for name when it still is
// the same Alcove file (a commit keeps the node, not the id).
func (n *node) existingChild(name string, info *apiv1.FileInfo) *fs.Inode {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	cn, ok := ch.Operations().(*node)
	if !ok {
		return nil
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.fileID == info.GetFileId() && cn.dir == info.GetFolder() {
		return ch
	}
	return nil
}

// attr fills out for info, preferring the staged size.
func (n *node) attr(info *apiv1.FileInfo, out *gofuse.Attr) {
	n.fsys.fillAttr(info, out)
	n.mu.Lock()
	st := n.stage
	n.mu.Unlock()
	if st != nil {
		out.Size = uint64(st.Size())
	}
	out.Ino = n.StableAttr().Ino
	if n == n.fsys.root {
		out.Ino = gofuse.FUSE_ROOT_ID
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return nil, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := n.fsys.c.GetStatus(octx, n.child(name))
	if err != nil {
		return nil, errno(err)
	}
	ch := n.existingChild(name, info)
	if ch == nil {
		ch = n.newChild(ctx, info)
	}
	ch.Operations().(*node).attr(info, &out.Attr)
	return ch, 0
}

// LookupNode serves a kernel node id unknown to this process: after a
// handover the successor rebuilds the predecessor's nodes this way.
func (n *node) LookupNode(ctx context.Context, id uint64, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.fsys.restoreMu.Lock()
	rn := n.fsys.restore[id]
	n.fsys.restoreMu.Unlock()
	if rn == nil {
		return nil, syscall.ESTALE
	}
	mode := uint32(syscall.S_IFREG)
	if rn.dir {
		mode = syscall.S_IFDIR
	}
	ch := n.NewInode(ctx, rn, fs.StableAttr{Mode: mode, Ino: id})
	n.fsys.track(ch.Operations().(*node))
	out.Attr.Mode = mode | 0o644
	out.Attr.Ino = id
	return ch, 0
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *gofuse.AttrOut) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := n.fsys.c.GetStatus(octx, n.path())
	if err != nil {
		return errno(err)
	}
	n.attr(info, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	p := n.path()
	req := &apiv1.SetAttributeRequest{Path: p}
	set := false
	if m, ok := in.GetMode(); ok {
		m &= 0o7777
		req.Mode = &m
		set = true
	}
	if uid, ok := in.GetUID(); ok && uid != ^uint32(0) {
		s := strconv.FormatUint(uint64(uid), 10)
		req.Owner = &s
		set = true
	}
	if gid, ok := in.GetGID(); ok && gid != ^uint32(0) {
		s := strconv.FormatUint(uint64(gid), 10)
		req.Group = &s
		set = true
	}
	if mt, ok := in.GetMTime(); ok {
		ms := mt.UnixMilli()
		req.MtimeMs = &ms
		set = true
	}
	if sz, ok := in.GetSize(); ok {
		if n.dir {
			return syscall.EISDIR
		}
		st, e := n.openStage(octx, sz == 0)
		if e != 0 {
			return e
		}
		if err := st.Truncate(int64(sz)); err != nil {
			n.releaseStage(octx, st)
			return errno(err)
		}
		// truncate(2) without an open file is durable on return;
		// ftruncate on an open file commits with the file.
		if _, isFile := fh.(*fileHandle); !isFile {
			if e := n.commit(octx, st); e != 0 {
				n.releaseStage(octx, st)
				return e
			}
		}
		n.releaseStage(octx, st)
	}
	if set {
		if err := n.fsys.c.SetAttribute(octx, req); err != nil {
			return errno(err)
		}
	}
	return n.Getattr(ctx, fh, out)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	octx, cancel := opCtx(ctx)
	defer cancel()
	infos, err := n.fsys.c.ListStatus(octx, n.path(), false, false)
	if err != nil {
		return nil, errno(err)
	}
	entries := make([]gofuse.DirEntry, 0, len(infos))
	for _, info := range infos {
		if strings.HasPrefix(info.GetName(), commitPrefix) {
			continue
		}
		mode := uint32(syscall.S_IFREG)
		if info.GetFolder() {
			mode = syscall.S_IFDIR
		}
		ent := gofuse.DirEntry{Name: info.GetName(), Mode: mode, Ino: ino(info)}
		if ch := n.GetChild(info.GetName()); ch != nil {
			ent.Ino = ch.StableAttr().Ino
		}
		entries = append(entries, ent)
	}
	return fs.NewListDirStream(entries), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return nil, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := n.fsys.c.Mkdir(octx, n.child(name), false, false, mode&0o7777)
	if err != nil {
		return nil, errno(err)
	}
	ch := n.newChild(ctx, info)
	ch.Operations().(*node).attr(info, &out.Attr)
	return ch, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *gofuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return nil, nil, 0, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	p := n.child(name)
	w, err := n.fsys.c.Create(octx, p, client.WriteOptions{Mode: mode & 0o7777, WriteType: n.fsys.cfg.WriteType})
	if err == nil {
		err = w.Close()
	}
	if errors.Is(err, meta.ErrAlreadyExists) && flags&syscall.O_EXCL == 0 {
		// A stale negative dentry: open the existing file instead.
		info, serr := n.fsys.c.GetStatus(octx, p)
		if serr != nil {
			return nil, nil, 0, errno(serr)
		}
		if info.GetFolder() {
			return nil, nil, 0, syscall.EISDIR
		}
		ch := n.existingChild(name, info)
		if ch == nil {
			ch = n.newChild(ctx, info)
		}
		cn := ch.Operations().(*node)
		fh, fl, e := cn.open(octx, flags, info)
		if e != 0 {
			return nil, nil, 0, e
		}
		cn.attr(info, &out.Attr)
		return ch, fh, fl, 0
	}
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	info := w.Info()
	ch := n.newChild(ctx, info)
	cn := ch.Operations().(*node)
	fh, fl, e := cn.open(octx, flags|syscall.O_TRUNC, info)
	if e != 0 {
		return nil, nil, 0, e
	}
	cn.attr(info, &out.Attr)
	return ch, fh, fl, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.dir {
		return nil, 0, syscall.EISDIR
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := n.fsys.c.GetStatus(octx, n.path())
	if err != nil {
		return nil, 0, errno(err)
	}
	return n.open(octx, flags, info)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	p := n.child(name)
	info, err := n.fsys.c.GetStatus(octx, p)
	if err != nil {
		return errno(err)
	}
	if info.GetFolder() {
		return syscall.EISDIR
	}
	return errno(n.fsys.c.Delete(octx, p, false, false))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	p := n.child(name)
	info, err := n.fsys.c.GetStatus(octx, p)
	if err != nil {
		return errno(err)
	}
	if !info.GetFolder() {
		return syscall.ENOTDIR
	}
	return errno(n.fsys.c.Delete(octx, p, false, false))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	if e := checkName(newName); e != 0 {
		return e
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	src, dst := n.child(name), np.child(newName)
	if src == dst {
		return 0
	}
	sinfo, err := n.fsys.c.GetStatus(octx, src)
	if err != nil {
		return errno(err)
	}
	if sinfo.GetFolder() && meta.HasPrefix(dst, src) {
		return syscall.EINVAL
	}
	dinfo, err := n.fsys.c.GetStatus(octx, dst)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		dinfo = nil
	case err != nil:
		return errno(err)
	}
	if dinfo != nil {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		switch {
		case sinfo.GetFolder() && !dinfo.GetFolder():
			return syscall.ENOTDIR
		case !sinfo.GetFolder() && dinfo.GetFolder():
			return syscall.EISDIR
		case dinfo.GetFolder():
			// POSIX lets a directory replace an empty one.
			if err := n.fsys.c.Delete(octx, dst, false, false); err != nil {
				return errno(err)
			}
			dinfo = nil
		}
	}
	return errno(n.fsys.c.Rename(octx, src, dst, dinfo != nil))
}

func (n *node) Statfs(ctx context.Context, out *gofuse.StatfsOut) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	return n.fsys.statfs(octx, out)
}
