package csi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

type controllerServer struct {
	csipb.UnimplementedControllerServer
	d *Driver
}

var _ csipb.ControllerServer = (*controllerServer)(nil)

// checkCapabilities accepts mount volumes in every access mode (a FUSE
// view of a shared namespace serves any number of readers and writers).
func checkCapabilities(caps []*csipb.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported: Alcove volumes are filesystems (use volumeMode: Filesystem)")
		}
		if c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "volume capability needs an access type (mount)")
		}
		if fs := c.GetMount().GetFsType(); fs != "" && fs != "fuse" && fs != "fuse.alcove" {
			return status.Errorf(codes.InvalidArgument, "fsType %q is not supported (Alcove volumes are FUSE mounts; leave fsType empty)", fs)
		}
		if c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csipb.VolumeCapability_AccessMode_UNKNOWN {
			return status.Error(codes.InvalidArgument, "volume capability needs an access mode")
		}
	}
	return nil
}

func (s *controllerServer) CreateVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	d := s.d
	if err := validName(req.GetName()); err != nil {
		return nil, meta.ToStatus(err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	if req.GetVolumeContentSource() != nil {
		return nil, status.Error(codes.InvalidArgument, "volume content sources (snapshots, clones) are not supported")
	}
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if limit := req.GetCapacityRange().GetLimitBytes(); limit > 0 {
		if capacity > limit {
			return nil, status.Errorf(codes.OutOfRange, "required bytes %d exceed limit bytes %d", capacity, limit)
		}
		if capacity == 0 {
			capacity = limit
		}
	}
	if capacity < 0 {
		return nil, status.Error(codes.OutOfRange, "negative capacity")
	}
	vp, err := parseParams(req.GetParameters(), d.cfg.AllowedUFS)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	if vp.ufsURI != "" {
		maps.Copy(vp.ufsProps, secretOptions(req.GetSecrets())) // provisioner-secret-*
	}
	rec := &volumeRecord{ID: req.GetName(), Name: req.GetName(), CapacityBytes: capacity, Retain: vp.retain, Context: map[string]string{}}
	switch {
	case vp.path != "":
		rec.Kind, rec.Path, rec.Retain = kindPath, vp.path, true
	case vp.ufsURI != "":
		rec.Kind, rec.Path, rec.UFS = kindUFS, meta.Join(d.cfg.VolumeRoot, req.GetName()), vp.ufsURI
	default:
		rec.Kind, rec.Path = kindDir, meta.Join(d.cfg.VolumeRoot, req.GetName())
	}
	maps.Copy(rec.Context, vp.nodeParams)
	rec.Context[ctxPath] = rec.Path

	d.mu.Lock()
	defer d.mu.Unlock()
	old, err := d.loadRecord(ctx, rec.ID)
	switch {
	case err == nil:
		if old.Kind != rec.Kind || old.Path != rec.Path || old.UFS != rec.UFS || old.CapacityBytes != rec.CapacityBytes {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with different parameters or capacity (%s %s, %d bytes)", rec.ID, old.Kind, old.Path, old.CapacityBytes)
		}
		return &csipb.CreateVolumeResponse{Volume: volumeOf(old)}, nil
	case !errors.Is(err, meta.ErrNotFound):
		return nil, meta.ToStatus(err)
	}
	if err := s.provision(ctx, rec, vp); err != nil {
		return nil, meta.ToStatus(err)
	}
	if err := d.saveRecord(ctx, rec); err != nil {
		return nil, meta.ToStatus(err)
	}
	d.log.Info("Volume created", "volume", rec.ID, "kind", rec.Kind, "path", rec.Path, "ufs", rec.UFS)
	return &csipb.CreateVolumeResponse{Volume: volumeOf(rec)}, nil
}

// provision makes the namespace side of a volume exist (idempotently).
func (s *controllerServer) provision(ctx context.Context, rec *volumeRecord, vp *volumeParams) error {
	ns := s.d.ns
	switch rec.Kind {
	case kindPath:
		info, err := ns.GetStatus(ctx, rec.Path)
		if errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("%w: parameter path %s does not exist in Alcove", meta.ErrInvalidArgument, rec.Path)
		}
		if err != nil {
			return err
		}
		if !info.GetFolder() {
			return fmt.Errorf("%w: parameter path %s is a file, not a directory", meta.ErrInvalidArgument, rec.Path)
		}
		return nil
	case kindUFS:
		if _, err := ns.Mkdir(ctx, meta.Parent(rec.Path), true, true, 0); err != nil {
			return err
		}
		err := ns.Mount(ctx, rec.Path, rec.UFS, vp.readOnly, false, vp.ufsProps)
		if errors.Is(err, meta.ErrAlreadyExists) {
			if info, serr := ns.GetStatus(ctx, rec.Path); serr == nil && info.GetMountPoint() {
				return nil // mounted by an earlier attempt
			}
		}
		return err
	default:
		if _, err := ns.Mkdir(ctx, rec.Path, true, true, 0o777); err != nil {
			return err
		}
		if vp.pvcNamespace == "" {
			return nil
		}
		// The directory belongs to the PVC's namespace: the master admits
		// only that namespace's ServiceAccounts (and superusers) to it.
		g := security.NamespaceGroup(vp.pvcNamespace)
		return ns.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: rec.Path, Group: &g})
	}
}

func volumeOf(rec *volumeRecord) *csipb.Volume {
	return &csipb.Volume{VolumeId: rec.ID, CapacityBytes: rec.CapacityBytes, VolumeContext: rec.Context}
}

func (s *controllerServer) DeleteVolume(ctx context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	d := s.d
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rec, err := d.loadRecord(ctx, req.GetVolumeId())
	if errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrInvalidArgument) {
		return &csipb.DeleteVolumeResponse{}, nil // never created, or already deleted
	}
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	switch {
	case rec.Kind == kindUFS:
		if err := d.ns.Unmount(ctx, rec.Path); err != nil && !errors.Is(err, meta.ErrNotFound) && !errors.Is(err, meta.ErrInvalidArgument) {
			return nil, meta.ToStatus(err)
		}
		if err := d.ns.Delete(ctx, rec.Path, false, true); err != nil && !errors.Is(err, meta.ErrNotFound) {
			return nil, meta.ToStatus(err)
		}
	case rec.Kind == kindDir && !rec.Retain:
		if err := d.ns.Delete(ctx, rec.Path, true, false); err != nil && !errors.Is(err, meta.ErrNotFound) {
			return nil, meta.ToStatus(err)
		}
	}
	if err := d.deleteRecord(ctx, rec.ID); err != nil {
		return nil, meta.ToStatus(err)
	}
	d.log.Info("Volume deleted", "volume", rec.ID, "kind", rec.Kind, "path", rec.Path, "retained", rec.Retain)
	return &csipb.DeleteVolumeResponse{}, nil
}

func (s *controllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	if _, err := s.d.loadRecord(ctx, req.GetVolumeId()); err != nil {
		if errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrInvalidArgument) {
			return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
		}
		return nil, meta.ToStatus(err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csipb.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

func (s *controllerServer) ListVolumes(ctx context.Context, req *csipb.ListVolumesRequest) (*csipb.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	start := 0
	if t := req.GetStartingToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not one this driver issued", t)
		}
		start = n
	}
	recs, err := s.d.listRecords(ctx)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	if start > len(recs) {
		return nil, status.Errorf(codes.Aborted, "starting token %d is past the %d volumes", start, len(recs))
	}
	end := len(recs)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csipb.ListVolumesResponse{}
	for _, r := range recs[start:end] {
		resp.Entries = append(resp.Entries, &csipb.ListVolumesResponse_Entry{Volume: volumeOf(r)})
	}
	if end < len(recs) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

// GetCapacity reports the free cache capacity of the live workers: data
// beyond it still fits (the UFS holds it), but is not all cached.
func (s *controllerServer) GetCapacity(ctx context.Context, _ *csipb.GetCapacityRequest) (*csipb.GetCapacityResponse, error) {
	ws, err := s.d.ns.Workers(ctx)
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	var free int64
	for _, w := range ws {
		if w.GetState() == apiv1.WorkerState_WORKER_LOST {
			continue
		}
		for _, t := range w.GetTiers() {
			free += max(0, t.GetCapacityBytes()-t.GetUsedBytes())
		}
	}
	return &csipb.GetCapacityResponse{AvailableCapacity: free}, nil
}

func (s *controllerServer) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	var caps []*csipb.ControllerServiceCapability
	for _, c := range []csipb.ControllerServiceCapability_RPC_Type{
		csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csipb.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csipb.ControllerServiceCapability_RPC_GET_CAPACITY,
		csipb.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csipb.ControllerServiceCapability{Type: &csipb.ControllerServiceCapability_Rpc{
			Rpc: &csipb.ControllerServiceCapability_RPC{Type: c}}})
	}
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}
