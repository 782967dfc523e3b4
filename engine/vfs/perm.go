package vfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Permissions. The mount uses default_permissions, so the kernel checks
// modes and owners on every path walk, open, create, remove and setattr
// (setattr_prepare) from the attributes this filesystem reports. The VFS
// checks the same rules itself, from the node's last attributes, because
// (1) it is usable without a kernel, (2) a handover or an Alcove client
// may call it with attributes the kernel never saw, and (3) some rules are
// the filesystem's alone: who owns a new file, the directory's setgid
// group, which bits a chmod keeps.

// Access modes (the low bits of a permission triplet).
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// permits reports whether caller c may access a node with attributes a
// for mask (mayRead|mayWrite|mayExec), as generic_permission does: root
// may do anything but execute a file without any execute bit; others get
// the owner, group or other triplet. inGroup reports supplementary
// group membership; it is asked only when it changes the answer.
func permits(c Caller, a *Attr, mask uint32, inGroup func(gid uint32) bool) bool {
	mask &= 7
	if mask == 0 {
		return true
	}
	perm := a.Mode & 0o777
	if c.Uid == 0 {
		return mask&mayExec == 0 || perm&0o111 != 0 || a.Mode&syscall.S_IFMT == syscall.S_IFDIR
	}
	var bits uint32
	switch {
	case c.Uid == a.Uid:
		bits = perm >> 6
	case (perm>>3)&mask != perm&mask && (c.Gid == a.Gid || inGroup(a.Gid)):
		bits = perm >> 3
	default:
		bits = perm
	}
	return bits&mask == mask
}

// inGroup reports whether the caller is in group gid: its primary group,
// or one of its supplementary groups (read from /proc: FUSE passes only the
// primary gid; a caller in another pid namespace has pid 0 and only that).
func (c Caller) inGroup(gid uint32) bool {
	if c.Gid == gid {
		return true
	}
	if c.Pid == 0 {
		return false
	}
	groups, err := supplementaryGroups(c.Pid)
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}

// supplementaryGroups reads the Groups line of /proc/PID/status.
func supplementaryGroups(pid uint32) ([]uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Groups:"))
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range bytes.Fields(rest) {
			if g, err := strconv.ParseUint(string(f), 10, 32); err == nil {
				out = append(out, uint32(g))
			}
		}
		return out, nil
	}
	return nil, sc.Err()
}

// access checks c's access (mask) to n from n's last attributes.
func (v *VFS) access(ctx context.Context, c Caller, n *Node, mask uint32) syscall.Errno {
	a, e := n.lastAttr(ctx)
	if e != 0 {
		return e
	}
	if !permits(c, &a, mask, c.inGroup) {
		return syscall.EACCES
	}
	return 0
}

// sticky enforces a sticky directory (mode S_ISVTX) on removing or
// replacing an entry owned by owner: only root, the entry's owner or the
// directory's owner may.
func sticky(c Caller, dir *Attr, owner uint32) syscall.Errno {
	if dir.Mode&syscall.S_ISVTX == 0 || c.Uid == 0 || c.Uid == owner || c.Uid == dir.Uid {
		return 0
	}
	return syscall.EPERM
}

// checkSetattr applies setattr_prepare's rules to a change of n's
// attributes a by c, and returns the change to make (mode bits a
// non-member loses are dropped, chown clears set-id bits). Size is checked
// by the caller (write permission or a writable handle).
func checkSetattr(c Caller, a *Attr, in SetAttrIn) (SetAttrIn, syscall.Errno) {
	owner := c.Uid == 0 || c.Uid == a.Uid
	if in.Uid != nil && *in.Uid != a.Uid && c.Uid != 0 {
		return in, syscall.EPERM // only root gives a file away
	}
	if in.Gid != nil && *in.Gid != a.Gid && c.Uid != 0 && (!owner || !c.inGroup(*in.Gid)) {
		return in, syscall.EPERM // the owner may pick a group of its own
	}
	if (in.Uid != nil || in.Gid != nil) && !owner {
		return in, syscall.EPERM
	}
	if in.Mode != nil {
		if !owner {
			return in, syscall.EPERM
		}
		m := *in.Mode & 0o7777
		gid := a.Gid
		if in.Gid != nil {
			gid = *in.Gid
		}
		if c.Uid != 0 && !c.inGroup(gid) {
			m &^= syscall.S_ISGID // a non-member cannot make a file setgid
		}
		in.Mode = &m
	}
	if (in.Uid != nil || in.Gid != nil) && in.Mode == nil && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		// chown clears setuid, and setgid on a group-executable file
		// (notify_change with ATTR_KILL_SUID/SGID).
		m := a.Mode & 0o7777
		if m&syscall.S_ISUID != 0 || m&(syscall.S_ISGID|0o010) == syscall.S_ISGID|0o010 {
			m &^= syscall.S_ISUID
			if m&0o010 != 0 {
				m &^= syscall.S_ISGID
			}
			in.Mode = &m
		}
	}
	if in.Mtime != nil {
		switch {
		case owner:
		case in.TimesNow:
			// "now" needs only write permission (utimensat(NULL)).
			if !permits(c, a, mayWrite, c.inGroup) {
				return in, syscall.EACCES
			}
		default:
			return in, syscall.EPERM
		}
	}
	return in, 0
}

// newOwnership is the owner, group and mode of a node c creates in a
// directory with attributes parent (inode_init_owner): the caller's uid;
// the directory's group when it is setgid (and a new directory inherits
// the setgid bit), else the caller's group; a non-member cannot create a
// setgid executable file.
func newOwnership(c Caller, parent *Attr, mode uint32, dir bool) (uid, gid, outMode uint32) {
	uid, gid, outMode = c.Uid, c.Gid, mode&0o7777
	if parent.Mode&syscall.S_ISGID != 0 {
		gid = parent.Gid
		if dir {
			outMode |= syscall.S_ISGID
		}
	}
	if !dir && outMode&(syscall.S_ISGID|0o010) == syscall.S_ISGID|0o010 && c.Uid != 0 && !c.inGroup(gid) {
		outMode &^= syscall.S_ISGID
	}
	return uid, gid, outMode
}
