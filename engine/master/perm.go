package master

import (
	"context"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Permissions the master enforces on the callers that act for a user
// (security.UserFrom: a ServiceAccount token, an asserted SIMPLE user, or
// a client certificate's name): POSIX owner/group/mode, by name, as the
// FUSE mounts' kernel and engine/vfs enforce them by number for the pods
// they serve. Tenants: a directory whose group is a namespace's
// ServiceAccount group (security.NamespaceGroup; the CSI controller gives
// each volume's directory its PVC's namespace) admits only members of that
// group, whatever its mode bits (kept 0777 for the pods' numeric uids on
// the FUSE mounts): a pod of another namespace cannot even traverse it. Components acting for nobody (workers, the job tier, node
// agents, admin certificates) and superusers are not checked; the
// component RPCs they may call are limited by role (security.Cluster).

// Access bits of a permission triplet.
const (
	permX uint32 = 1
	permW uint32 = 2
	permR uint32 = 4
	// permList: read and search on a directory, nothing on a file (ls).
	permList uint32 = 1 << 8
)

// checkedUser returns the user whose permissions a call is checked with,
// or ok false when it is not checked.
func (m *Master) checkedUser(ctx context.Context) (u security.User, ok bool) {
	u, named := security.UserFrom(ctx)
	if !named {
		p, authenticated := security.PeerFrom(ctx)
		if !authenticated || (p.Role != security.RoleClient && p.Role != security.RoleUser) {
			return security.User{}, false // TLS off, or a component acting for nobody
		}
		// A client certificate that names no user acts as its own name.
		u = security.User{Name: p.Name}
	}
	if slices.Contains(m.cfg.Superusers, u.Name) || slices.ContainsFunc(m.cfg.SuperGroups, u.InGroup) {
		return security.User{}, false
	}
	return u, true
}

// permits reports whether u may access a file of owner, group and mode
// for mask (permR|permW|permX).
func permits(u security.User, owner, group string, mode, mask uint32) bool {
	mode &= 0o777
	var bits uint32
	switch {
	case u.Name != "" && u.Name == owner:
		bits = mode >> 6
	case group != "" && u.InGroup(group):
		bits = mode >> 3
	default:
		bits = mode
	}
	return bits&mask == mask
}

// authorize checks a path operation: execute (search) on every existing
// ancestor of p, parentMask on p's parent directory and mask on p itself
// when it exists. A missing path is left to the operation (NotFound).
func (m *Master) authorize(ctx context.Context, verb, p string, parentMask, mask uint32) error {
	u, checked := m.checkedUser(ctx)
	if !checked {
		return nil
	}
	comps := meta.Components(p)
	var inodes []*apiv1.Inode
	if err := m.store.View(func(tx *bbolt.Tx) (err error) {
		inodes, err = walk(tx, comps)
		return err
	}); err != nil {
		return fmt.Errorf("%s %s: %w", verb, p, err)
	}
	found := len(inodes) == len(comps)+1
	for i, ino := range inodes {
		isTarget := found && i == len(inodes)-1
		// The parent, or the deepest existing ancestor of a missing path
		// (where a recursive create adds the first directory).
		isParent := (found && i == len(comps)-1) || (!found && i == len(inodes)-1)
		want := permX
		switch {
		case isTarget && mask == permList:
			if want = 0; ino.GetFolder() {
				want = permR | permX
			}
		case isTarget:
			want = mask
		case isParent:
			want |= parentMask
		}
		if ns, ok := security.NamespaceOfGroup(ino.GetGroup()); ok && !u.InGroup(ino.GetGroup()) {
			return fmt.Errorf("%s %s: %w: %s belongs to namespace %s; user %q is not of it", verb, p, meta.ErrPermission, nodePath(comps, i), ns, u.Name)
		}
		if want != 0 && !permits(u, ino.GetOwner(), ino.GetGroup(), ino.GetMode(), want) {
			what := "search"
			if isTarget || isParent {
				what = accessName(want)
			}
			return fmt.Errorf("%s %s: %w: user %q may not %s %s (owner %q, group %q, mode %#o)", verb, p, meta.ErrPermission,
				u.Name, what, nodePath(comps, i), ino.GetOwner(), ino.GetGroup(), ino.GetMode()&0o7777)
		}
	}
	return nil
}

// authorizeOwner checks that the caller owns p (chmod, chown of group).
func (m *Master) authorizeOwner(ctx context.Context, verb, p string) error {
	u, checked := m.checkedUser(ctx)
	if !checked {
		return nil
	}
	if err := m.authorize(ctx, verb, p, 0, 0); err != nil {
		return err
	}
	n, err := m.lookup(p)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, p, err)
	}
	if n.inode.GetOwner() != u.Name {
		return fmt.Errorf("%s %s: %w: only its owner %q or a superuser may", verb, p, meta.ErrPermission, n.inode.GetOwner())
	}
	return nil
}

// superuserOnly refuses callers whose permissions are checked.
func (m *Master) superuserOnly(ctx context.Context, verb string) error {
	if u, checked := m.checkedUser(ctx); checked {
		return fmt.Errorf("%s: %w: user %q is not a superuser", verb, meta.ErrPermission, u.Name)
	}
	return nil
}

// mayRead reports whether the caller may read a file (a block token is
// granted only then).
func (m *Master) mayRead(ctx context.Context, fi *apiv1.FileInfo) bool {
	u, checked := m.checkedUser(ctx)
	return !checked || permits(u, fi.GetOwner(), fi.GetGroup(), fi.GetMode(), permR)
}

// permInterceptor checks FileSystemMaster requests before they run: the
// one place that says which permission each operation needs.
func (m *Master) permInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := m.checkRequest(ctx, req); err != nil {
		return nil, meta.ToStatus(err)
	}
	return h(ctx, req)
}

func (m *Master) checkRequest(ctx context.Context, req any) error {
	u, checked := m.checkedUser(ctx)
	if !checked {
		return nil
	}
	path := func(p string) string {
		if c, err := meta.CleanPath(p); err == nil {
			return c
		}
		return "/" // a bad path fails in the operation with InvalidArgument
	}
	switch r := req.(type) {
	case *apiv1.GetStatusRequest:
		return m.authorize(ctx, "get status", path(r.GetPath()), 0, 0)
	case *apiv1.ListStatusRequest:
		return m.authorize(ctx, "list", path(r.GetPath()), 0, permList)
	case *apiv1.CreateDirectoryRequest:
		r.Owner, r.Group = ownAs(u, r.GetGroup())
		return m.authorize(ctx, "create directory", path(r.GetPath()), permW|permX, 0)
	case *apiv1.CreateFileRequest:
		r.Owner, r.Group = ownAs(u, r.GetGroup())
		return m.authorize(ctx, "create", path(r.GetPath()), permW|permX, permW)
	case *apiv1.CreateSymlinkRequest:
		r.Owner, r.Group = ownAs(u, r.GetGroup())
		return m.authorize(ctx, "create symlink", path(r.GetPath()), permW|permX, 0)
	case *apiv1.CompleteFileRequest:
		return m.authorize(ctx, "complete", path(r.GetPath()), 0, permW)
	case *apiv1.DeleteRequest:
		if r.GetOrphanSession() != "" {
			return m.superuserOnly(ctx, "delete keeping an open file")
		}
		return m.authorize(ctx, "delete", path(r.GetPath()), permW|permX, 0)
	case *apiv1.RenameRequest:
		if r.GetOrphanSession() != "" || r.GetKeepIdentity() {
			return m.superuserOnly(ctx, "rename keeping identities")
		}
		if err := m.authorize(ctx, "rename", path(r.GetSrc()), permW|permX, 0); err != nil {
			return err
		}
		return m.authorize(ctx, "rename", path(r.GetDst()), permW|permX, 0)
	case *apiv1.SetAttributeRequest:
		p := path(r.GetPath())
		switch {
		case r.GetFileId() != 0:
			return m.superuserOnly(ctx, "set attributes by file id")
		case r.Owner != nil:
			return m.superuserOnly(ctx, "change the owner of "+p)
		case r.Mode != nil || r.Group != nil:
			if r.Group != nil && !u.InGroup(r.GetGroup()) {
				return m.superuserOnly(ctx, "change the group of "+p+" to one the caller is not in")
			}
			return m.authorizeOwner(ctx, "change mode of", p)
		}
		return m.authorize(ctx, "set attributes of", p, 0, permW)
	case *apiv1.FreeRequest:
		return m.authorize(ctx, "free", path(r.GetPath()), 0, permW)
	case *apiv1.MountRequest:
		return m.superuserOnly(ctx, "mount "+r.GetUfsUri())
	case *apiv1.UnmountRequest:
		return m.superuserOnly(ctx, "unmount "+r.GetAlcovePath())
	case *apiv1.ReleaseOrphansRequest:
		return m.superuserOnly(ctx, "release orphans")
	}
	return nil
}

// ownAs is the owner and group a checked user's new file gets: the user,
// and the group asked for only if the user is in it (else the default).
func ownAs(u security.User, group string) (string, string) {
	if !u.InGroup(group) {
		group = ""
	}
	return u.Name, group
}

func accessName(mask uint32) string {
	var s []byte
	for _, b := range []struct {
		bit uint32
		c   byte
	}{{permR, 'r'}, {permW, 'w'}, {permX, 'x'}} {
		if mask&b.bit != 0 {
			s = append(s, b.c)
		}
	}
	return "access (" + string(s) + ")"
}

func nodePath(comps []string, i int) string {
	return meta.Join("/", comps[:i]...)
}
