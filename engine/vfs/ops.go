package vfs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// commitPrefix names the temporary files a commit writes before renaming
// them over the target; Readdir hides them.
const commitPrefix = ".alcove-fuse-commit-"

// attr fills out for info, preferring the staged size; the inode number
// is the node's. The node remembers them (permission checks, a node that
// left the namespace).
func (n *Node) attr(info *apiv1.FileInfo, out *Attr) {
	n.v.fillAttr(info, out)
	out.Ino = n.ino
	n.mu.Lock()
	st := n.stage
	n.mu.Unlock()
	// The stage's lock comes before the node's (a commit holds it while it
	// updates the node), so its size is read without the node's lock.
	if st != nil {
		out.Size = uint64(st.Size())
		out.Blocks = uint64(st.allocated()+511) / 512
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.orphaned {
		out.Nlink = 0
	}
	n.seen, n.hasAttr = *out, true
	if t := info.GetSymlinkTarget(); t != "" {
		n.target = t
	}
}

// status is n's Alcove metadata: by path while n is in the namespace and
// the file there still is n, else by file id — a file unlinked while open
// (an orphan), or one moved behind this VFS's back. ENOENT when it is gone.
func (n *Node) status(ctx context.Context) (*apiv1.FileInfo, syscall.Errno) {
	n.mu.Lock()
	gone, id := n.orphaned, n.fileID
	n.mu.Unlock()
	return n.statusOf(ctx, gone, id)
}

// statusOf is status for a caller that holds n.mu (gone and id are n's).
func (n *Node) statusOf(ctx context.Context, gone bool, id int64) (*apiv1.FileInfo, syscall.Errno) {
	if !gone {
		if p, ok := n.path(); ok {
			info, err := n.v.c.GetStatus(ctx, p)
			if err == nil && (n == n.v.root || inoOf(info) == n.ino) {
				return info, 0
			}
			if err != nil && !errors.Is(err, meta.ErrNotFound) {
				return nil, errno(err)
			}
		}
	}
	info, err := n.v.c.StatusByID(ctx, id)
	if err != nil {
		return nil, errno(err)
	}
	return info, 0
}

// entry checks name and the caller's access (mask) to directory dir, and
// returns the Alcove path of name in it.
func (v *VFS) entry(ctx context.Context, c Caller, dir *Node, name string, mask uint32) (string, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return "", e
	}
	if e := v.access(ctx, c, dir, mask); e != 0 {
		return "", e
	}
	return dir.childPath(name)
}

// Lookup finds name in directory n.
func (v *VFS) Lookup(ctx context.Context, c Caller, n *Node, name string, out *Attr) (*Node, syscall.Errno) {
	p, e := v.entry(ctx, c, n, name, mayExec)
	if e != 0 {
		return nil, e
	}
	info := n.fromListing(name)
	if info == nil {
		octx, cancel := opCtx(ctx)
		defer cancel()
		var err error
		if info, err = v.c.GetStatus(octx, p); err != nil {
			return nil, errno(err)
		}
	}
	ch := n.linkChild(name, info)
	ch.attr(info, out)
	return ch, 0
}

// Getattr returns n's attributes. A node that left the namespace while
// something still holds it (an open file, a working directory, a bind
// mount of a removed directory: issue 17) answers like tmpfs: its
// attributes with no links, not ENOENT.
func (v *VFS) Getattr(ctx context.Context, c Caller, n *Node, out *Attr) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	return n.getattr(octx, out)
}

func (n *Node) getattr(ctx context.Context, out *Attr) syscall.Errno {
	info, e := n.status(ctx)
	if e == syscall.ENOENT {
		// A node this VFS unlinked (or orphaned) answers from its last
		// attributes, as tmpfs does, and so does a directory removed behind
		// the VFS's back: it may be a bind mount's source (issue 17), and
		// ENOENT there makes kubelet leak the mount. A file removed behind
		// the VFS's back is ENOENT, so the kernel drops its dentry.
		_, linked := n.path()
		n.mu.Lock()
		a, ok := n.seen, n.hasAttr && (!linked || n.orphaned || n.IsDir())
		n.mu.Unlock()
		if ok {
			*out = a
			out.Nlink = 0
			return 0
		}
	}
	if e != 0 {
		return e
	}
	n.attr(info, out)
	return 0
}

// SetAttrIn says which attributes Setattr changes.
type SetAttrIn struct {
	Mode         *uint32 // permission bits
	Uid, Gid     *uint32
	Atime, Mtime *int64 // ms since the epoch
	Size         *uint64
	// TimesNow: the times are set to now (utimensat with UTIME_NOW),
	// which write permission allows; explicit times need the owner.
	TimesNow bool
	// Handle is the open file the change is made through (ftruncate), or
	// nil (truncate(2), which is durable on return).
	Handle *Handle
}

// Setattr changes n's attributes and returns the new ones.
func (v *VFS) Setattr(ctx context.Context, c Caller, n *Node, in SetAttrIn, out *Attr) syscall.Errno {
	if in.Uid != nil && *in.Uid == ^uint32(0) {
		in.Uid = nil // chown(2) with -1: unchanged
	}
	if in.Gid != nil && *in.Gid == ^uint32(0) {
		in.Gid = nil
	}
	defer v.mutating()()
	a, e := n.lastAttr(ctx)
	if e != 0 {
		return e
	}
	if in, e = checkSetattr(c, &a, in); e != 0 {
		return e
	}
	if in.Size != nil && in.Handle == nil {
		if e := v.access(ctx, c, n, mayWrite); e != 0 {
			return e
		}
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	req := &apiv1.SetAttributeRequest{}
	if in.Mode != nil {
		m := *in.Mode & 0o7777
		req.Mode = &m
	}
	if in.Uid != nil {
		s := idString(*in.Uid)
		req.Owner = &s
	}
	if in.Gid != nil {
		s := idString(*in.Gid)
		req.Group = &s
	}
	req.MtimeMs, req.AtimeMs = in.Mtime, in.Atime
	if in.Size != nil {
		if n.typ != syscall.S_IFREG {
			return syscall.EINVAL
		}
		if e := n.truncate(octx, int64(*in.Size), in.Handle == nil); e != 0 {
			return e
		}
	}
	if req.Mode != nil || req.Owner != nil || req.Group != nil || req.MtimeMs != nil || req.AtimeMs != nil {
		if e := n.setAttribute(octx, req); e != 0 {
			return e
		}
	}
	return n.getattr(octx, out)
}

// setAttribute sends req for n: by path, or by file id once n left the
// namespace.
func (n *Node) setAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) syscall.Errno {
	if p, ok := n.path(); ok && !n.gone() {
		req.Path = p
	} else {
		req.FileId = n.currentID()
	}
	return errno(n.v.c.SetAttribute(ctx, req))
}

// truncate resizes n through its stage; commit makes it durable now
// (truncate(2) without an open file).
func (n *Node) truncate(ctx context.Context, size int64, commit bool) syscall.Errno {
	if n.IsDir() {
		return syscall.EISDIR
	}
	st, e := n.openStage(ctx, size == 0)
	if e != 0 {
		return e
	}
	if err := st.Truncate(size); err != nil {
		n.releaseStage(ctx, st)
		return errno(err)
	}
	if commit {
		if e := n.commit(ctx, st); e != 0 {
			n.releaseStage(ctx, st)
			return e
		}
	}
	return n.releaseStage(ctx, st)
}

// relatime is how old an atime may get before a read updates it even
// when the file did not change (Linux relatime).
const relatime = 24 * time.Hour

// touchAtime updates the atime of the file info describes after a read
// access, with relatime's rule: only when it is not newer than the mtime
// or ctime, or older than a day. The master keeps it; one update per
// change of the file or per day keeps the journal traffic bounded by the
// write rate. Best effort: a failed update fails no read.
func (n *Node) touchAtime(ctx context.Context, info *apiv1.FileInfo) {
	now := time.Now().UnixMilli()
	at := info.GetAccessTimeMs()
	if at > info.GetLastModificationTimeMs() && at > info.GetChangeTimeMs() && now-at < relatime.Milliseconds() {
		return
	}
	req := &apiv1.SetAttributeRequest{FileId: info.GetFileId(), AtimeMs: &now}
	defer n.v.mutating()()
	if err := n.v.c.SetAttribute(ctx, req); err != nil {
		n.v.logger.V(2).Info("Atime update failed", "path", info.GetPath(), "err", err)
		return
	}
	n.mu.Lock()
	n.seen.Atime = time.UnixMilli(now)
	n.mu.Unlock()
}

// DirEntry is one Readdir entry.
type DirEntry struct {
	Name string
	Ino  uint64
	Type uint32 // S_IFDIR, S_IFREG or S_IFLNK
}

// Readdir lists directory n.
func (v *VFS) Readdir(ctx context.Context, c Caller, n *Node) ([]DirEntry, syscall.Errno) {
	if e := v.access(ctx, c, n, mayRead); e != 0 {
		return nil, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	p, e := n.pathOrErr()
	if e != 0 {
		return nil, e
	}
	gen, at := v.gen.Load(), time.Now()
	infos, err := v.c.ListStatus(octx, p, false, false)
	if err != nil {
		return nil, errno(err)
	}
	var listing map[string]*apiv1.FileInfo
	if len(infos) <= maxListing {
		listing = make(map[string]*apiv1.FileInfo, len(infos))
		for _, info := range infos {
			listing[info.GetName()] = info
		}
	}
	n.mu.Lock()
	n.listing, n.listedGen, n.listedAt = listing, gen, at
	n.mu.Unlock()
	entries := make([]DirEntry, 0, len(infos))
	v.treeMu.RLock()
	defer v.treeMu.RUnlock()
	for _, info := range infos {
		if strings.HasPrefix(info.GetName(), commitPrefix) {
			continue
		}
		ent := DirEntry{Name: info.GetName(), Type: typeOf(info), Ino: inoOf(info)}
		if ch := n.children[info.GetName()]; ch != nil {
			ent.Ino = ch.ino
		}
		entries = append(entries, ent)
	}
	return entries, 0
}

// Readlink returns symbolic link n's target.
func (v *VFS) Readlink(ctx context.Context, c Caller, n *Node) (string, syscall.Errno) {
	if n.typ != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	n.mu.Lock()
	t := n.target
	n.mu.Unlock()
	if t != "" {
		return t, 0 // a link's target never changes
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	var a Attr
	if e := n.getattr(octx, &a); e != 0 {
		return "", e
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.target, 0
}

// Open opens file n with open(2) flags.
func (v *VFS) Open(ctx context.Context, c Caller, n *Node, flags uint32) (*Handle, OpenFlags, syscall.Errno) {
	switch n.typ {
	case syscall.S_IFDIR:
		return nil, 0, syscall.EISDIR
	case syscall.S_IFLNK:
		return nil, 0, syscall.ELOOP // the kernel follows links itself
	}
	if e := v.access(ctx, c, n, openMask(flags)); e != 0 {
		return nil, 0, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, e := n.status(octx)
	if e != 0 {
		return nil, 0, e
	}
	h, fl, e := n.open(octx, flags, info)
	if e == 0 && !v.cfg.NoAtime && flags&syscall.O_ACCMODE != syscall.O_WRONLY && flags&syscall.O_TRUNC == 0 {
		n.touchAtime(octx, info)
	}
	return h, fl, e
}

// openMask is the access an open(2) with flags needs: O_TRUNC needs
// write permission whatever the access mode (may_open).
func openMask(flags uint32) uint32 {
	var mask uint32
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		mask = mayRead
	case syscall.O_WRONLY:
		mask = mayWrite
	default:
		mask = mayRead | mayWrite
	}
	if flags&syscall.O_TRUNC != 0 {
		mask |= mayWrite
	}
	return mask
}

// idString is a uid or gid as Alcove stores owners.
func idString(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
