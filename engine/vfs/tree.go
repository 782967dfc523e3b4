package vfs

import (
	"context"
	"errors"
	"syscall"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// Operations that change the namespace: create, mkdir, symlink, unlink,
// rmdir, rename; and orphans, the files unlinked or replaced while open.

// maxSymlinkTarget is the longest link target (PATH_MAX - 1).
const maxSymlinkTarget = 4095

// Mkdir creates directory name in n.
func (v *VFS) Mkdir(ctx context.Context, c Caller, n *Node, name string, mode uint32, out *Attr) (*Node, syscall.Errno) {
	defer v.mutating()()
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

// Symlink creates symbolic link name in n pointing to target.
func (v *VFS) Symlink(ctx context.Context, c Caller, n *Node, name, target string, out *Attr) (*Node, syscall.Errno) {
	defer v.mutating()()
	p, e := v.entry(ctx, c, n, name, mayWrite|mayExec)
	if e != 0 {
		return nil, e
	}
	switch {
	case target == "":
		return nil, syscall.ENOENT
	case len(target) > maxSymlinkTarget:
		return nil, syscall.ENAMETOOLONG
	}
	pa, e := n.lastAttr(ctx)
	if e != 0 {
		return nil, e
	}
	uid, gid, _ := newOwnership(c, &pa, 0o777, false)
	octx, cancel := opCtx(ctx)
	defer cancel()
	info, err := v.c.Symlink(octx, p, target, idString(uid), idString(gid))
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
	defer v.mutating()()
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
	// The new file stays incomplete until the first commit writes its
	// content (commitFresh): one master call now, one then.
	created, err := v.c.CreateIncomplete(octx, p, client.WriteOptions{Mode: mode, ExactMode: true, WriteType: v.cfg.WriteType, Owner: idString(uid), Group: idString(gid)})
	var info *apiv1.FileInfo
	existing := false
	switch {
	case errors.Is(err, meta.ErrAlreadyExists) && flags&syscall.O_EXCL == 0:
		// A stale negative dentry: open the existing file instead.
		if info, err = v.c.GetStatus(octx, p); err != nil {
			return nil, nil, 0, errno(err)
		}
		switch typeOf(info) {
		case syscall.S_IFDIR:
			return nil, nil, 0, syscall.EISDIR
		case syscall.S_IFLNK:
			return nil, nil, 0, syscall.EEXIST
		}
		existing = true
	case err != nil:
		return nil, nil, 0, errno(err)
	default:
		info = created
		flags |= syscall.O_TRUNC
	}
	ch := n.linkChild(name, info)
	if !existing {
		ch.mu.Lock()
		ch.fresh = info
		ch.mu.Unlock()
	}
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

// Unlink removes file name from n.
func (v *VFS) Unlink(ctx context.Context, c Caller, n *Node, name string) syscall.Errno {
	return v.remove(ctx, c, n, name, false)
}

// Rmdir removes the empty directory name from n.
func (v *VFS) Rmdir(ctx context.Context, c Caller, n *Node, name string) syscall.Errno {
	return v.remove(ctx, c, n, name, true)
}

func (v *VFS) remove(ctx context.Context, c Caller, n *Node, name string, dir bool) syscall.Errno {
	defer v.mutating()()
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
	// A file open here loses its name but lives on as an orphan until
	// its last close.
	ch := v.Node(inoOf(info))
	keep := ch != nil && ch.holdOpen()
	opts := client.DeleteOptions{}
	if keep {
		opts.OrphanSession = v.cfg.Session
	}
	err = v.c.DeleteWith(octx, p, opts)
	if keep {
		ch.orphanDone(octx, err == nil)
	}
	if err != nil {
		return errno(err)
	}
	n.unlinkChild(name)
	return 0
}

// Rename moves name in n to newName in np (rename(2), renameat2 flags).
func (v *VFS) Rename(ctx context.Context, c Caller, n *Node, name string, np *Node, newName string, flags uint32) syscall.Errno {
	defer v.mutating()()
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
			if err := v.c.DeleteWith(ctx, dst, client.DeleteOptions{}); err != nil {
				return errno(err)
			}
			dinfo = nil
		}
	}
	// A replaced file open here lives on as an orphan.
	var old *Node
	if dinfo != nil {
		old = v.Node(inoOf(dinfo))
	}
	keep := old != nil && old.holdOpen()
	opts := client.RenameOptions{Overwrite: dinfo != nil}
	if keep {
		opts.OrphanSession = v.cfg.Session
	}
	err = v.c.RenameWith(ctx, src, dst, opts)
	if keep {
		old.orphanDone(ctx, err == nil)
	}
	return errno(err)
}

// holdOpen reports whether file n is open; if so it stays counted as
// losing its name (pending) until orphanDone, so a last close meanwhile
// leaves the release to orphanDone.
func (n *Node) holdOpen() bool {
	if n.typ != syscall.S_IFREG {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.opens == 0 || n.orphaned {
		return false
	}
	n.orphaning++
	return true
}

// orphanDone ends holdOpen: when the master made n an orphan (ok), n is
// read and written by id from now on, and released at its last close —
// now, if that happened meanwhile.
func (n *Node) orphanDone(ctx context.Context, ok bool) {
	n.mu.Lock()
	n.orphaning--
	if ok {
		n.orphaned = true
	}
	release := ok && n.opens == 0 && n.orphaning == 0
	n.mu.Unlock()
	if release {
		n.releaseOrphan(ctx)
	}
}

// closed counts one handle of n closed and reports whether it was the
// last one of an orphan (which must then be released).
func (n *Node) closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opens--
	return n.orphaned && n.opens == 0 && n.orphaning == 0
}

// releaseOrphan drops orphan n at its last close: its stage (nothing to
// commit: the file has no name) and the master's copy.
func (n *Node) releaseOrphan(ctx context.Context) {
	n.mu.Lock()
	st := n.stage
	if st != nil && st.refs == 0 {
		n.stage = nil
	} else {
		st = nil
	}
	id := n.fileID
	n.mu.Unlock()
	if st != nil {
		st.close()
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	if _, err := n.v.c.ReleaseOrphans(octx, n.v.cfg.Session, []int64{id}); err != nil {
		n.v.logger.Error(err, "Release of an unlinked file failed; the next mount of this session releases it", "ino", n.ino, "fileID", id)
	}
}

// PurgeOrphans releases every orphan of this VFS's session: a mount that
// starts afresh (not a handover) has no open files, so what the master
// still keeps for its session was left by a predecessor that died.
func (v *VFS) PurgeOrphans(ctx context.Context) error {
	octx, cancel := opCtx(ctx)
	defer cancel()
	n, err := v.c.ReleaseOrphans(octx, v.cfg.Session, nil)
	if err != nil {
		return err
	}
	if n > 0 {
		v.logger.Info("Released files a previous mount left unlinked but open", "count", n, "session", v.cfg.Session)
	}
	return nil
}
