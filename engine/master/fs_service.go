package master

import (
	"context"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/ufs"
)

// fsServer is the FileSystemMaster service. Handlers stay thin: the work is
// in fs_ops.go and every error leaves through meta.ToStatus. Calls that
// journal run exactly once per request id (requests.go).
type fsServer struct {
	apiv1.UnimplementedFileSystemMasterServer
	m *Master
}

var _ apiv1.FileSystemMasterServer = (*fsServer)(nil)

func (s *fsServer) GetStatus(ctx context.Context, req *apiv1.GetStatusRequest) (*apiv1.GetStatusResponse, error) {
	fi, err := s.m.getStatusReq(ctx, req)
	if err == nil {
		err = s.m.grant(ctx, fi, security.AccessRead)
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.GetStatusResponse{FileInfo: fi}, nil
}

func (s *fsServer) ListStatus(ctx context.Context, req *apiv1.ListStatusRequest) (*apiv1.ListStatusResponse, error) {
	fis, err := s.m.listStatus(ctx, req)
	if err == nil && listingTokens(ctx) {
		for _, fi := range fis {
			if err = s.m.grant(ctx, fi, security.AccessRead); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.ListStatusResponse{FileInfos: fis}, nil
}

func (s *fsServer) CreateDirectory(ctx context.Context, req *apiv1.CreateDirectoryRequest) (*apiv1.CreateDirectoryResponse, error) {
	fi, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (*apiv1.FileInfo, error) { return s.m.createDirectory(ctx, req) },
		func(ino *apiv1.Inode) (*apiv1.FileInfo, error) { return s.m.replayInfo(req.GetPath(), ino) })
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CreateDirectoryResponse{FileInfo: fi}, nil
}

func (s *fsServer) CreateFile(ctx context.Context, req *apiv1.CreateFileRequest) (*apiv1.CreateFileResponse, error) {
	fi, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (*apiv1.FileInfo, error) { return s.m.createFile(ctx, req) },
		func(ino *apiv1.Inode) (*apiv1.FileInfo, error) { return s.m.replayInfo(req.GetPath(), ino) })
	if err == nil {
		err = s.m.grant(ctx, fi, security.AccessRead|security.AccessWrite)
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CreateFileResponse{FileInfo: fi}, nil
}

func (s *fsServer) CompleteFile(ctx context.Context, req *apiv1.CompleteFileRequest) (*apiv1.CompleteFileResponse, error) {
	fi, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (*apiv1.FileInfo, error) { return s.m.completeFile(ctx, req) },
		func(ino *apiv1.Inode) (*apiv1.FileInfo, error) { return s.m.replayInfo(req.GetPath(), ino) })
	if err == nil {
		err = s.m.grant(ctx, fi, security.AccessRead)
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CompleteFileResponse{FileInfo: fi}, nil
}

func (s *fsServer) Delete(ctx context.Context, req *apiv1.DeleteRequest) (*apiv1.DeleteResponse, error) {
	if _, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.m.delete(ctx, req) }, replayNone); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.DeleteResponse{}, nil
}

func (s *fsServer) Rename(ctx context.Context, req *apiv1.RenameRequest) (*apiv1.RenameResponse, error) {
	if _, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.m.rename(ctx, req) }, replayNone); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.RenameResponse{}, nil
}

func (s *fsServer) SetAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) (*apiv1.SetAttributeResponse, error) {
	if _, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.m.setAttribute(ctx, req) }, replayNone); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.SetAttributeResponse{}, nil
}

func (s *fsServer) Free(ctx context.Context, req *apiv1.FreeRequest) (*apiv1.FreeResponse, error) {
	n, err := s.m.free(ctx, req)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.FreeResponse{FreedBlocks: n}, nil
}

func (s *fsServer) Mount(ctx context.Context, req *apiv1.MountRequest) (*apiv1.MountResponse, error) {
	if _, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.m.mount(ctx, req) }, replayNone); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.MountResponse{}, nil
}

func (s *fsServer) Unmount(ctx context.Context, req *apiv1.UnmountRequest) (*apiv1.UnmountResponse, error) {
	if _, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.m.unmount(ctx, req) }, replayNone); err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.UnmountResponse{}, nil
}

// GetMountTable answers clients: secret properties are redacted (workers
// get them through BlockMaster.GetMountConfig).
func (s *fsServer) GetMountTable(context.Context, *apiv1.GetMountTableRequest) (*apiv1.GetMountTableResponse, error) {
	all, err := s.m.mountTable()
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	for _, mt := range all {
		mt.Properties = ufs.Redact(mt.GetProperties())
	}
	return &apiv1.GetMountTableResponse{MountPoints: all}, nil
}

func (s *fsServer) CreateSymlink(ctx context.Context, req *apiv1.CreateSymlinkRequest) (*apiv1.CreateSymlinkResponse, error) {
	fi, err := exactlyOnce(ctx, s.m, func(ctx context.Context) (*apiv1.FileInfo, error) { return s.m.createSymlink(ctx, req) },
		func(ino *apiv1.Inode) (*apiv1.FileInfo, error) { return s.m.replayInfo(req.GetPath(), ino) })
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.CreateSymlinkResponse{FileInfo: fi}, nil
}

// ReleaseOrphans journals one entry per orphan, so it is not tied to one
// request id; it is idempotent instead: inode ids are never reused, and an
// orphan already released counts as done (releaseOrphan).
func (s *fsServer) ReleaseOrphans(ctx context.Context, req *apiv1.ReleaseOrphansRequest) (*apiv1.ReleaseOrphansResponse, error) {
	n, err := s.m.releaseOrphans(ctx, req)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.ReleaseOrphansResponse{Released: n}, nil
}
