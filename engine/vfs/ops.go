package vfs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// commitPrefix names the temporary files a commit writes before renaming
// them over the target; Readdir hides them.
const commitPrefix = ".alcove-fuse-commit-"

// attr fills out for info, preferring the staged size; the inode number
// is the node's.
func (n *Node) attr(info *apiv1.FileInfo, out *Attr) {
	n.v.fillAttr(info, out)
	n.mu.Lock()
	st := n.stage
	n.mu.Unlock()
	if st != nil {
		out.Size = uint64(st.Size())
		out.Blocks = (out.Size + 511) / 512
	}
	out.Ino = n.ino
	n.mu.Lock()
	n.seen, n.hasAttr = *out, true
	n.mu.Unlock()
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
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := v.c.GetStatus(octx, p)
	if err != nil {
		return nil, errno(err)
	}
	ch := n.linkChild(name, info)
	ch.attr(info, out)
	return ch, 0
}

// Getattr returns n's attributes.
func (v *VFS) Getattr(ctx context.Context, c Caller, n *Node, out *Attr) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	return n.getattr(octx, out)
}

func (n *Node) getattr(ctx context.Context, out *Attr) syscall.Errno {
	p, e := n.pathOrErr()
	if e != 0 {
		return e
	}
	info, err := n.v.c.GetStatus(ctx, p)
	if err != nil {
		return errno(err)
	}
	n.attr(info, out)
	return 0
}

// SetAttrIn says which attributes Setattr changes.
type SetAttrIn struct {
	Mode     *uint32 // permission bits
	Uid, Gid *uint32
	Mtime    *int64 // ms since the epoch
	Size     *uint64
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
	p, e := n.pathOrErr()
	if e != 0 {
		return e
	}
	req := &apiv1.SetAttributeRequest{Path: p}
	set := false
	if in.Mode != nil {
		m := *in.Mode & 0o7777
		req.Mode = &m
		set = true
	}
	if in.Uid != nil {
		s := strconv.FormatUint(uint64(*in.Uid), 10)
		req.Owner = &s
		set = true
	}
	if in.Gid != nil {
		s := strconv.FormatUint(uint64(*in.Gid), 10)
		req.Group = &s
		set = true
	}
	if in.Mtime != nil {
		req.MtimeMs = in.Mtime
		set = true
	}
	if in.Size != nil {
		if e := n.truncate(octx, int64(*in.Size), in.Handle == nil); e != 0 {
			return e
		}
	}
	if set {
		if err := v.c.SetAttribute(octx, req); err != nil {
			return errno(err)
		}
	}
	return n.getattr(octx, out)
}

// truncate resizes n through its stage; commit makes it durable now
// (truncate(2) without an open file).
func (n *Node) truncate(ctx context.Context, size int64, commit bool) syscall.Errno {
	if n.dir {
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

// DirEntry is one Readdir entry.
type DirEntry struct {
	Name string
	Ino  uint64
	Dir  bool
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
	infos, err := v.c.ListStatus(octx, p, false, false)
	if err != nil {
		return nil, errno(err)
	}
	entries := make([]DirEntry, 0, len(infos))
	v.treeMu.RLock()
	defer v.treeMu.RUnlock()
	for _, info := range infos {
		if strings.HasPrefix(info.GetName(), commitPrefix) {
			continue
		}
		ent := DirEntry{Name: info.GetName(), Dir: info.GetFolder(), Ino: inoOf(info)}
		if ch := n.children[info.GetName()]; ch != nil {
			ent.Ino = ch.ino
		}
		entries = append(entries, ent)
	}
	return entries, 0
}

// Mkdir creates directory name in n.
func (v *VFS) Mkdir(ctx context.Context, c Caller, n *Node, name string, mode uint32, out *Attr) (*Node, syscall.Errno) {
	p, e := v.entry(ctx, c, n, name, mayWrite|mayExec)
	if e != 0 {
		return nil, e
	}
	pa, e := n.lastAttr(ctx)
	if e != 0 {
		return nil, e
	}
	uid, gid, mode := newOwnership(c, &pa, mode, true)
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := v.c.MkdirWith(octx, p, client.MkdirOptions{Mode: mode, ExactMode: true, Owner: idString(uid), Group: idString(gid)})
	if err != nil {
		return nil, errno(err)
	}
	ch := n.linkChild(name, info)
	ch.attr(info, out)
	return ch, 0
}

// Create creates file name in n and opens it with flags (open(2) with
// O_CREAT).
func (v *VFS) Create(ctx context.Context, c Caller, n *Node, name string, flags, mode uint32, out *Attr) (*Node, *Handle, OpenFlags, syscall.Errno) {
	p, e := v.entry(ctx, c, n, name, mayWrite|mayExec)
	if e != 0 {
		return nil, nil, 0, e
	}
	pa, e := n.lastAttr(ctx)
	if e != 0 {
		return nil, nil, 0, e
	}
	uid, gid, mode := newOwnership(c, &pa, mode, false)
	octx, cancel := opCtx(ctx)
	defer cancel()
	w, err := v.c.Create(octx, p, client.WriteOptions{Mode: mode, ExactMode: true, WriteType: v.cfg.WriteType, Owner: idString(uid), Group: idString(gid)})
	if err == nil {
		err = w.Close()
	}
	var info *apiv1.FileInfo
	existing := false
	switch {
	case errors.Is(err, meta.ErrAlreadyExists) && flags&syscall.O_EXCL == 0:
		// A stale negative dentry: open the existing file instead.
		if info, err = v.c.GetStatus(octx, p); err != nil {
			return nil, nil, 0, errno(err)
		}
		if info.GetFolder() {
			return nil, nil, 0, syscall.EISDIR
		}
		existing = true
	case err != nil:
		return nil, nil, 0, errno(err)
	default:
		info = w.Info()
		flags |= syscall.O_TRUNC
	}
	ch := n.linkChild(name, info)
	var a Attr
	ch.attr(info, &a)
	if existing {
		if e := v.access(ctx, c, ch, openMask(flags)); e != 0 {
			return nil, nil, 0, e
		}
	}
	h, fl, e := ch.open(octx, flags, info)
	if e != 0 {
		return nil, nil, 0, e
	}
	ch.attr(info, out)
	return ch, h, fl, 0
}

// Open opens file n with open(2) flags.
func (v *VFS) Open(ctx context.Context, c Caller, n *Node, flags uint32) (*Handle, OpenFlags, syscall.Errno) {
	if n.dir {
		return nil, 0, syscall.EISDIR
	}
	if e := v.access(ctx, c, n, openMask(flags)); e != 0 {
		return nil, 0, e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	p, e := n.pathOrErr()
	if e != 0 {
		return nil, 0, e
	}
	info, err := v.c.GetStatus(octx, p)
	if err != nil {
		return nil, 0, errno(err)
	}
	return n.open(octx, flags, info)
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

// Unlink removes file name from n.
func (v *VFS) Unlink(ctx context.Context, c Caller, n *Node, name string) syscall.Errno {
	return v.remove(ctx, c, n, name, false)
}

// Rmdir removes the empty directory name from n.
func (v *VFS) Rmdir(ctx context.Context, c Caller, n *Node, name string) syscall.Errno {
	return v.remove(ctx, c, n, name, true)
}

func (v *VFS) remove(ctx context.Context, c Caller, n *Node, name string, dir bool) syscall.Errno {
	p, e := v.entry(ctx, c, n, name, mayWrite|mayExec)
	if e != 0 {
		return e
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := v.c.GetStatus(octx, p)
	if err != nil {
		return errno(err)
	}
	switch {
	case dir && !info.GetFolder():
		return syscall.ENOTDIR
	case !dir && info.GetFolder():
		return syscall.EISDIR
	}
	if e := v.stickyCheck(ctx, c, n, info); e != 0 {
		return e
	}
	if err := v.c.Delete(octx, p, false, false); err != nil {
		return errno(err)
	}
	n.unlinkChild(name)
	return 0
}

// Rename moves name in n to newName in np (rename(2), renameat2 flags).
func (v *VFS) Rename(ctx context.Context, c Caller, n *Node, name string, np *Node, newName string, flags uint32) syscall.Errno {
	src, e := v.entry(ctx, c, n, name, mayWrite|mayExec)
	if e != 0 {
		return e
	}
	dst, e := v.entry(ctx, c, np, newName, mayWrite|mayExec)
	if e != 0 {
		return e
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	if src == dst {
		return 0
	}
	if e := v.rename(octx, c, n, np, src, dst, flags); e != 0 {
		return e
	}
	v.treeMu.Lock()
	if ch := n.children[name]; ch != nil {
		v.attachLocked(np, newName, ch)
	} else if old := np.children[newName]; old != nil {
		v.detachLocked(old)
	}
	v.treeMu.Unlock()
	return 0
}

// stickyCheck enforces dir's sticky bit on removing or replacing the
// entry info.
func (v *VFS) stickyCheck(ctx context.Context, c Caller, dir *Node, info *apiv1.FileInfo) syscall.Errno {
	da, e := dir.lastAttr(ctx)
	if e != 0 {
		return e
	}
	return sticky(c, &da, v.uid(info.GetOwner()))
}

func (v *VFS) rename(ctx context.Context, c Caller, n, np *Node, src, dst string, flags uint32) syscall.Errno {
	sinfo, err := v.c.GetStatus(ctx, src)
	if err != nil {
		return errno(err)
	}
	if sinfo.GetFolder() && meta.HasPrefix(dst, src) {
		return syscall.EINVAL
	}
	if e := v.stickyCheck(ctx, c, n, sinfo); e != 0 {
		return e
	}
	if sinfo.GetFolder() && n != np && c.Uid != 0 {
		// A directory moving elsewhere gets a new "..": it must be
		// writable itself.
		var sa Attr
		v.fillAttr(sinfo, &sa)
		if !permits(c, &sa, mayWrite, c.inGroup) {
			return syscall.EACCES
		}
	}
	dinfo, err := v.c.GetStatus(ctx, dst)
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
		if e := v.stickyCheck(ctx, c, np, dinfo); e != 0 {
			return e
		}
		switch {
		case sinfo.GetFolder() && !dinfo.GetFolder():
			return syscall.ENOTDIR
		case !sinfo.GetFolder() && dinfo.GetFolder():
			return syscall.EISDIR
		case dinfo.GetFolder():
			// POSIX lets a directory replace an empty one.
			if err := v.c.Delete(ctx, dst, false, false); err != nil {
				return errno(err)
			}
			dinfo = nil
		}
	}
	return errno(v.c.Rename(ctx, src, dst, dinfo != nil))
}
