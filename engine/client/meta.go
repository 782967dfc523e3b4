package client

import (
	"context"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// GetStatus returns a path's metadata, with block locations.
func (c *Client) GetStatus(ctx context.Context, path string) (*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	var info *apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.GetStatus(ctx, &apiv1.GetStatusRequest{Path: p, SyncIntervalMs: c.syncIntervalMs()})
		info = r.GetFileInfo()
		return err
	})
	return info, err
}

// StatusByID returns the metadata of the file with id wherever it is,
// also a file unlinked while open (an orphan).
func (c *Client) StatusByID(ctx context.Context, id int64) (*apiv1.FileInfo, error) {
	var info *apiv1.FileInfo
	err := c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.GetStatus(ctx, &apiv1.GetStatusRequest{FileId: id})
		info = r.GetFileInfo()
		return err
	})
	return info, err
}

// ListStatus lists a directory (or returns the file itself).
func (c *Client) ListStatus(ctx context.Context, path string, recursive, syncUfs bool) ([]*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	var out []*apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.ListStatus(ctx, &apiv1.ListStatusRequest{Path: p, Recursive: recursive, SyncUfs: syncUfs, SyncIntervalMs: c.syncIntervalMs()})
		out = r.GetFileInfos()
		return err
	})
	return out, err
}

func (c *Client) syncIntervalMs() *int64 {
	if d := c.cfg.MetadataSyncInterval; d != nil {
		ms := d.Milliseconds()
		if *d < 0 {
			ms = -1
		}
		return &ms
	}
	return nil
}

// LoadMetadata re-reads a path's metadata from the UFS (Alluxio's fs
// loadMetadata): objects added, changed or deleted behind Alcove's back
// become visible, and a changed file's cached blocks are dropped. For a
// directory it re-reads the listing (the whole subtree with recursive) and
// returns what it lists; for a file, the file.
func (c *Client) LoadMetadata(ctx context.Context, path string, recursive bool) ([]*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	var info *apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.GetStatus(ctx, &apiv1.GetStatusRequest{Path: p, SyncUfs: true})
		info = r.GetFileInfo()
		return err
	})
	if err != nil {
		return nil, err
	}
	if !info.GetFolder() {
		return []*apiv1.FileInfo{info}, nil
	}
	return c.ListStatus(ctx, p, recursive, true)
}

// Mkdir creates a directory; parents with recursive; an existing directory
// is fine with allowExists.
func (c *Client) Mkdir(ctx context.Context, path string, recursive, allowExists bool, mode uint32) (*apiv1.FileInfo, error) {
	return c.MkdirWith(ctx, path, MkdirOptions{Recursive: recursive, AllowExists: allowExists, Mode: mode})
}

// MkdirOptions tune MkdirWith; zero values take the client's defaults.
type MkdirOptions struct {
	Recursive   bool // create missing parents
	AllowExists bool // an existing directory is fine
	Mode        uint32
	ExactMode   bool // Mode as given, 0 included (else 0 means 0755)
	// Owner and Group of the new directory (default: the client's).
	Owner, Group string
}

// MkdirWith creates a directory with options.
func (c *Client) MkdirWith(ctx context.Context, path string, o MkdirOptions) (*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	if o.Owner == "" {
		o.Owner = c.cfg.Owner
	}
	if o.Group == "" {
		o.Group = c.cfg.Group
	}
	var info *apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: p, Recursive: o.Recursive, AllowExists: o.AllowExists,
			Mode: o.Mode, ExactMode: o.ExactMode, WriteType: c.cfg.WriteType, Owner: o.Owner, Group: o.Group})
		info = r.GetFileInfo()
		return err
	})
	return info, err
}

// Delete removes a path (and its UFS copy unless alcoveOnly).
func (c *Client) Delete(ctx context.Context, path string, recursive, alcoveOnly bool) error {
	return c.DeleteWith(ctx, path, DeleteOptions{Recursive: recursive, AlcoveOnly: alcoveOnly})
}

// DeleteOptions tune DeleteWith.
type DeleteOptions struct {
	Recursive  bool
	AlcoveOnly bool // keep the UFS copy
	// OrphanSession: the caller still has the file open. It loses its
	// name but stays readable by id until ReleaseOrphans.
	OrphanSession string
}

// DeleteWith removes a path with options.
func (c *Client) DeleteWith(ctx context.Context, path string, o DeleteOptions) error {
	p, err := meta.CleanPath(path)
	if err != nil {
		return err
	}
	return c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.Delete(ctx, &apiv1.DeleteRequest{Path: p, Recursive: o.Recursive, AlcoveOnly: o.AlcoveOnly, OrphanSession: o.OrphanSession})
		return err
	})
}

// Rename moves src to dst.
func (c *Client) Rename(ctx context.Context, src, dst string, overwrite bool) error {
	return c.RenameWith(ctx, src, dst, RenameOptions{Overwrite: overwrite})
}

// RenameOptions tune RenameWith.
type RenameOptions struct {
	Overwrite bool // replace an existing file at dst
	// KeepIdentity: src is new content for the file at dst, which keeps
	// its inode number, owner, group, mode and atime.
	KeepIdentity bool
	// OrphanSession: a replaced dst the caller still has open becomes an
	// orphan of this session.
	OrphanSession string
}

// RenameWith moves src to dst with options.
func (c *Client) RenameWith(ctx context.Context, src, dst string, o RenameOptions) error {
	s, err := meta.CleanPath(src)
	if err != nil {
		return err
	}
	d, err := meta.CleanPath(dst)
	if err != nil {
		return err
	}
	return c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.Rename(ctx, &apiv1.RenameRequest{Src: s, Dst: d, Overwrite: o.Overwrite, KeepIdentity: o.KeepIdentity, OrphanSession: o.OrphanSession})
		return err
	})
}

// Symlink creates a symbolic link at path to target, owned by owner and
// group ("": the client's). The client's write type decides whether a
// UFS that stores links gets it too (not with MUST_CACHE).
func (c *Client) Symlink(ctx context.Context, path, target, owner, group string) (*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	if owner == "" {
		owner = c.cfg.Owner
	}
	if group == "" {
		group = c.cfg.Group
	}
	var info *apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.CreateSymlink(ctx, &apiv1.CreateSymlinkRequest{Path: p, Target: target, Owner: owner, Group: group, WriteType: c.cfg.WriteType})
		info = r.GetFileInfo()
		return err
	})
	return info, err
}

// ReleaseOrphans removes orphans of session (files unlinked while open):
// the ones with ids, or all of them when ids is empty.
func (c *Client) ReleaseOrphans(ctx context.Context, session string, ids []int64) (int, error) {
	var n int
	err := c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.ReleaseOrphans(ctx, &apiv1.ReleaseOrphansRequest{Session: session, FileIds: ids})
		n = int(r.GetReleased())
		return err
	})
	return n, err
}

// SetAttribute changes pin, TTL, mode, owner or times; the path (or the
// file id) is set on req.
func (c *Client) SetAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) error {
	if req.GetFileId() == 0 {
		p, err := meta.CleanPath(req.GetPath())
		if err != nil {
			return err
		}
		req.Path = p
	}
	return c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.SetAttribute(ctx, req)
		return err
	})
}

// Free removes a path's cached blocks (its data stays in the UFS).
func (c *Client) Free(ctx context.Context, path string, recursive, force bool) (int64, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return 0, err
	}
	var n int64
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.Free(ctx, &apiv1.FreeRequest{Path: p, Recursive: recursive, Force: force})
		n = r.GetFreedBlocks()
		return err
	})
	return n, err
}

// Mount mounts a UFS URI at a namespace path.
func (c *Client) Mount(ctx context.Context, path, ufsURI string, readOnly, shared bool, props map[string]string) error {
	p, err := meta.CleanPath(path)
	if err != nil {
		return err
	}
	return c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.Mount(ctx, &apiv1.MountRequest{AlcovePath: p, UfsUri: ufsURI, ReadOnly: readOnly, Shared: shared, Properties: props})
		return err
	})
}

// Unmount removes a mount point.
func (c *Client) Unmount(ctx context.Context, path string) error {
	p, err := meta.CleanPath(path)
	if err != nil {
		return err
	}
	return c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.Unmount(ctx, &apiv1.UnmountRequest{AlcovePath: p})
		return err
	})
}

// MountTable lists mount points.
func (c *Client) MountTable(ctx context.Context) ([]*apiv1.MountPointInfo, error) {
	var out []*apiv1.MountPointInfo
	err := c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.GetMountTable(ctx, &apiv1.GetMountTableRequest{})
		out = r.GetMountPoints()
		return err
	})
	return out, err
}

// Workers lists registered workers with their tiers.
func (c *Client) Workers(ctx context.Context) ([]*apiv1.WorkerInfo, error) {
	var out []*apiv1.WorkerInfo
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		r, err := m.GetWorkers(ctx, &apiv1.GetWorkersRequest{})
		out = r.GetWorkers()
		return err
	})
	return out, err
}

// MasterInfo describes the leader master (waiting through an election).
func (c *Client) MasterInfo(ctx context.Context) (*apiv1.GetMasterInfoResponse, error) {
	var out *apiv1.GetMasterInfoResponse
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		var err error
		out, err = m.GetMasterInfo(ctx, &apiv1.GetMasterInfoRequest{RequireLeader: true})
		return err
	})
	return out, err
}

// Checkpoint asks the leader to snapshot its journal.
func (c *Client) Checkpoint(ctx context.Context) (int64, error) {
	var idx int64
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		r, err := m.Checkpoint(ctx, &apiv1.CheckpointRequest{})
		idx = r.GetIndex()
		return err
	})
	return idx, err
}

// QuorumInfo describes the journal group (any master answers).
func (c *Client) QuorumInfo(ctx context.Context) (*apiv1.GetQuorumInfoResponse, error) {
	var out *apiv1.GetQuorumInfoResponse
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		var err error
		out, err = m.GetQuorumInfo(ctx, &apiv1.GetQuorumInfoRequest{})
		return err
	})
	return out, err
}

// AddQuorumMember adds a voting member (id "" uses the address as its id).
func (c *Client) AddQuorumMember(ctx context.Context, id, address string) error {
	return c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		_, err := m.AddQuorumMember(ctx, &apiv1.AddQuorumMemberRequest{Id: id, Address: address})
		return err
	})
}

// RemoveQuorumMember removes a member named by id or journal address.
func (c *Client) RemoveQuorumMember(ctx context.Context, id, address string) error {
	return c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		_, err := m.RemoveQuorumMember(ctx, &apiv1.RemoveQuorumMemberRequest{Id: id, Address: address})
		return err
	})
}

// TransferLeadership makes the member named by id or journal address lead.
func (c *Client) TransferLeadership(ctx context.Context, id, address string) (string, error) {
	var leader string
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		r, err := m.TransferLeadership(ctx, &apiv1.TransferLeadershipRequest{Id: id, Address: address})
		leader = r.GetLeaderId()
		return err
	})
	return leader, err
}
