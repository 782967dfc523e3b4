package master

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
	_ "github.com/alcove-io/alcove/engine/ufs/s3" // s3:// and s3a:// under storage
)

// ufsKey splits a UFS URI into its store (scheme://host) and clean path, so
// that overlapping mounts can be detected.
func ufsKey(uri string) (store, path string, err error) {
	u, err := ufs.ParseURI(uri)
	if err != nil {
		return "", "", err
	}
	p, err := meta.CleanPath(u.Path)
	if err != nil {
		return "", "", fmt.Errorf("UFS URI %q: %w", uri, err)
	}
	return u.Scheme + "://" + u.Host, p, nil
}

// mount adds a UFS at a new (or empty) directory of the namespace.
func (m *Master) mount(ctx context.Context, req *apiv1.MountRequest) error {
	p, err := cleanPath("mount", req.GetAlcovePath())
	if err != nil {
		return err
	}
	uri := strings.TrimSpace(req.GetUfsUri())
	if uri == "" {
		return fmt.Errorf("%w: mount %s: empty UFS URI", meta.ErrInvalidArgument, p)
	}
	if p == "/" {
		return fmt.Errorf("mount /: %w: the root UFS is mounted at start", meta.ErrAlreadyExists)
	}
	store, up, err := ufsKey(uri)
	if err != nil {
		return fmt.Errorf("mount %s: %w", p, err)
	}
	fs, fsPath, err := ufs.Resolve(uri, req.GetProperties())
	if err != nil {
		return fmt.Errorf("mount %s: %w", p, err)
	}
	st, err := statFollow(ctx, fs, fsPath)
	if err != nil {
		return fmt.Errorf("mount %s at %s: %w", uri, p, err)
	}
	if !st.Folder {
		return fmt.Errorf("mount %s at %s: UFS path %w", uri, p, meta.ErrNotDirectory)
	}
	var all []*apiv1.MountPointInfo
	if err := m.store.View(func(tx *bbolt.Tx) error { all, err = mounts(tx); return err }); err != nil {
		return err
	}
	for _, other := range all {
		if other.AlcovePath == p {
			return fmt.Errorf("mount %s: %w", p, meta.ErrAlreadyExists)
		}
		ostore, op, err := ufsKey(other.UfsUri)
		if err != nil || ostore != store {
			continue
		}
		if meta.HasPrefix(up, op) || meta.HasPrefix(op, up) {
			return fmt.Errorf("%w: mount %s at %s: overlaps %s mounted at %s", meta.ErrFailedPrecondition, uri, p, other.UfsUri, other.AlcovePath)
		}
	}
	if _, err := m.parentDir(ctx, p, false, nil); err != nil {
		return fmt.Errorf("mount %s: %w", p, err)
	}
	n, err := m.getOrLoad(ctx, p)
	switch {
	case err == nil && !n.inode.Folder:
		return fmt.Errorf("mount %s: %w: a file is there", p, meta.ErrAlreadyExists)
	case err == nil:
		// Only an empty directory may be mounted over, also in its UFS.
		kids, err := m.listChildren(ctx, n, false)
		if err != nil {
			return err
		}
		if len(kids) > 0 {
			return fmt.Errorf("mount %s: %w", p, meta.ErrDirectoryNotEmpty)
		}
	case !errors.Is(err, meta.ErrNotFound):
		return err
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_AddMount{AddMount: &apiv1.AddMountEntry{
		Mount: &apiv1.MountPointInfo{AlcovePath: p, UfsUri: uri, ReadOnly: req.GetReadOnly(), Shared: req.GetShared(), Properties: req.GetProperties()},
	}}})
	if err != nil {
		return fmt.Errorf("mount %s at %s: %w", uri, p, err)
	}
	return m.refreshMounts()
}

// unmount removes a mount and its metadata (the UFS is untouched).
func (m *Master) unmount(ctx context.Context, req *apiv1.UnmountRequest) error {
	p, err := cleanPath("unmount", req.GetAlcovePath())
	if err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w: cannot unmount the root", meta.ErrFailedPrecondition)
	}
	var found bool
	var under []string
	err = m.store.View(func(tx *bbolt.Tx) error {
		all, err := mounts(tx)
		for _, mt := range all {
			switch {
			case mt.AlcovePath == p:
				found = true
			case meta.HasPrefix(mt.AlcovePath, p):
				under = append(under, mt.AlcovePath)
			}
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("unmount %s: not a mount point: %w", p, meta.ErrNotFound)
	case len(under) > 0:
		return fmt.Errorf("%w: unmount %s: mount point %s is inside it", meta.ErrFailedPrecondition, p, under[0])
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_DeleteMount{DeleteMount: &apiv1.DeleteMountEntry{AlcovePath: p}}})
	if err != nil {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	return m.refreshMounts()
}

// mountProps are the properties a mount's UFS is built with: the stored
// ones, except that root options given in the configuration replace the
// root mount's at every start (rotated credentials take effect on restart).
func (m *Master) mountProps(mnt *apiv1.MountPointInfo) map[string]string {
	if mnt.GetAlcovePath() == "/" && m.cfg.RootUFSProperties != nil && mnt.GetUfsUri() == m.cfg.RootUFS {
		return m.cfg.RootUFSProperties
	}
	return mnt.GetProperties()
}

// mountByID returns a mount with its properties in clear.
func (m *Master) mountByID(id int64) (*apiv1.MountPointInfo, error) {
	all, err := m.mountTable()
	if err != nil {
		return nil, err
	}
	for _, mt := range all {
		if mt.GetMountId() == id {
			mt.Properties = m.mountProps(mt)
			return mt, nil
		}
	}
	return nil, fmt.Errorf("mount id %d: %w (unmounted?)", id, meta.ErrNotFound)
}

func (m *Master) mountTable() ([]*apiv1.MountPointInfo, error) {
	var all []*apiv1.MountPointInfo
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		all, err = mounts(tx)
		return err
	})
	return all, err
}

// statFollow stats a mount's root, following symbolic links (a mounted
// directory may be a link to one; inside a mount links are objects).
func statFollow(ctx context.Context, fs ufs.UFS, p string) (ufs.Status, error) {
	for range 8 {
		st, err := fs.Stat(ctx, p)
		if err != nil || st.Target == "" {
			return st, err
		}
		if strings.HasPrefix(st.Target, "/") {
			p = path.Clean(st.Target)
		} else {
			p = path.Join(path.Dir(p), st.Target)
		}
	}
	return ufs.Status{}, fmt.Errorf("stat %s: too many levels of symbolic links: %w", p, meta.ErrInvalidArgument)
}
