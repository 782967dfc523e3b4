package csi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/alcove-io/alcove/engine/meta"
)

// NodeConfig configures the node service.
type NodeConfig struct {
	StateDir        string        // staged volumes, FUSE daemon logs (default /var/lib/alcove/csi)
	AlcoveBinary    string        // binary run as `alcove fuse` (default: this executable)
	MasterAddresses []string      // passed to FUSE daemons
	DomainSocketDir string        // the local worker's domain-socket directory, for the inline socket volume
	KubeletDir      string        // kubelet root; "" skips plugin registration
	KubeletEndpoint string        // the CSI socket path as kubelet sees it (default: the endpoint's path)
	CheckInterval   time.Duration // how often staged mounts are checked (default 5 s)
	MountTimeout    time.Duration // how long a FUSE daemon may take to mount (default 30 s)
	FuseArgs        []string      // extra `alcove fuse` arguments
	// FuseCgroup, when set, is the cgroup (e.g. /alcove-fuse) FUSE daemons
	// are moved to in every hierarchy under CgroupRoot, so that they outlive
	// the node plugin's container (see cgroup.go).
	FuseCgroup string
	CgroupRoot string // where the host's cgroup hierarchies are mounted (default /sys/fs/cgroup)
}

type nodeServer struct {
	csipb.UnimplementedNodeServer
	d       *Driver
	cfg     NodeConfig
	log     klog.Logger
	mounter mount.Interface
	reg     *registrar

	mu     sync.Mutex // guards staged and locks (see volumelock.go)
	staged map[string]*stagedVolume
	locks  map[string]*volumeLock

	loopCtx  context.Context // the health loop's; ends at stop
	stopLoop context.CancelFunc
	wg       sync.WaitGroup
}

var _ csipb.NodeServer = (*nodeServer)(nil)

func newNodeServer(d *Driver, cfg NodeConfig) (*nodeServer, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/alcove/csi"
	}
	if cfg.AlcoveBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the alcove binary for FUSE daemons: %w", err)
		}
		cfg.AlcoveBinary = exe
	}
	if cfg.KubeletEndpoint == "" {
		p, err := socketPath(d.cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		cfg.KubeletEndpoint = p
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 5 * time.Second
	}
	if cfg.MountTimeout <= 0 {
		cfg.MountTimeout = 30 * time.Second
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	return &nodeServer{d: d, cfg: cfg, log: d.log.WithName("node"), mounter: mount.New(""),
		staged: map[string]*stagedVolume{}, locks: map[string]*volumeLock{}, loopCtx: loopCtx, stopLoop: stopLoop}, nil
}

// start loads what earlier runs staged, registers with kubelet and starts
// the mount health loop.
func (n *nodeServer) start(ctx context.Context) error {
	n.log = klog.FromContext(ctx).WithName("csi-node")
	staged, err := n.loadAll()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.staged = staged
	n.mu.Unlock()
	if len(staged) > 0 {
		n.log.Info("Found staged volumes of an earlier run", "count", len(staged))
	}
	if err := n.startRegistration(); err != nil {
		return err
	}
	n.wg.Add(1)
	go n.checkLoop()
	return nil
}

func (n *nodeServer) stop() {
	n.stopLoop()
	n.wg.Wait()
	if n.reg != nil {
		n.reg.srv.Stop()
	}
}

// checkLoop restores staged mounts whose FUSE daemon died, driven by what
// mountinfo and stat say rather than by events.
func (n *nodeServer) checkLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-n.loopCtx.Done():
			return
		case <-t.C:
		}
		for _, id := range n.stagedIDs() {
			n.checkVolume(id)
		}
	}
}

// checkVolume restores the staged volume id if its mount is broken, unless
// an RPC is working on it.
func (n *nodeServer) checkVolume(id string) {
	unlock, ok := n.tryLockVolume(id)
	if !ok {
		return
	}
	defer unlock()
	v, ok := n.stagedVol(id)
	if !ok || n.healthy(v.StagingPath) {
		return
	}
	if err := n.restore(n.loopCtx, v); err != nil {
		n.log.Error(err, "restore staged volume", "volume", id)
	}
}

// volumePath validates the volume context a node is given (a PV's
// volumeAttributes, written by hand for a static PV) and returns the
// volume's namespace path. The FUSE options in it go on the daemon's
// command line, so they are checked here, not left to the daemon.
func volumePath(volumeID string, vctx map[string]string) (string, error) {
	p := vctx[ctxPath]
	if p == "" {
		p = volumeID // a static PV may name the namespace path as its handle
	}
	clean, err := meta.CleanPath(p)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "volume %s: namespace path: %v", volumeID, err)
	}
	if wt := vctx[ctxWriteType]; wt != "" {
		if _, err := meta.ParseWriteType(wt); err != nil {
			return "", status.Errorf(codes.InvalidArgument, "volume %s: volume attribute %s: %v", volumeID, ctxWriteType, err)
		}
	}
	if rt := vctx[ctxReadType]; rt != "" {
		if _, err := meta.ParseReadType(rt); err != nil {
			return "", status.Errorf(codes.InvalidArgument, "volume %s: volume attribute %s: %v", volumeID, ctxReadType, err)
		}
	}
	if r := vctx[ctxReplication]; r != "" {
		if err := checkReplication(r); err != nil {
			return "", status.Errorf(codes.InvalidArgument, "volume %s: volume attribute %s: %v", volumeID, ctxReplication, err)
		}
	}
	return clean, nil
}

func readOnlyCap(c *csipb.VolumeCapability) bool {
	m := c.GetAccessMode().GetMode()
	return m == csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY || m == csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

func (n *nodeServer) NodeStageVolume(ctx context.Context, req *csipb.NodeStageVolumeRequest) (*csipb.NodeStageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	case staging == "":
		return nil, status.Error(codes.InvalidArgument, "staging target path is required")
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if err := checkCapabilities([]*csipb.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	path, err := volumePath(id, req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if req.GetVolumeContext()[paramUFS] != "" {
		if err := n.mountStaticUFS(ctx, path, req.GetVolumeContext(), req.GetSecrets()); err != nil {
			return nil, meta.ToStatus(fmt.Errorf("volume %s: %w", id, err))
		}
	}
	info, err := n.d.ns.GetStatus(ctx, path)
	if err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "volume %s: namespace path %s does not exist", id, path)
		}
		return nil, meta.ToStatus(err)
	}
	if !info.GetFolder() {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s: %s is a file, not a directory", id, path)
	}
	unlock, err := n.lockVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if v, ok := n.stagedVol(id); ok {
		if v.StagingPath != staging {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is already staged at %s", id, v.StagingPath)
		}
		if n.healthy(staging) {
			return &csipb.NodeStageVolumeResponse{}, nil
		}
		if err := n.restore(ctx, v); err != nil {
			return nil, status.Errorf(codes.Internal, "restore volume %s: %v", id, err)
		}
		return &csipb.NodeStageVolumeResponse{}, nil
	}
	v := &stagedVolume{VolumeID: id, StagingPath: staging, Path: path, Context: req.GetVolumeContext(),
		ReadOnly: readOnlyCap(req.GetVolumeCapability()), Targets: map[string]bool{}}
	if err := n.unmount(staging); err != nil { // leftovers of a crashed daemon
		return nil, status.Errorf(codes.Internal, "clean staging path: %v", err)
	}
	if err := n.spawn(ctx, v); err != nil {
		return nil, status.Errorf(codes.Internal, "stage volume %s: %v", id, err)
	}
	if err := n.save(v); err != nil {
		n.stopDaemon(v)
		return nil, status.Errorf(codes.Internal, "stage volume %s: %v", id, err)
	}
	n.setStaged(id, v)
	return &csipb.NodeStageVolumeResponse{}, nil
}

// mountStaticUFS mounts the UFS a static PV names (volume attributes ufs,
// ufsOption.*, readOnly) at its path, with the node-stage secrets as
// credentials; a mount already there is kept (idempotent).
func (n *nodeServer) mountStaticUFS(ctx context.Context, path string, vctx, secrets map[string]string) error {
	uri, props, readOnly, err := ufsMountParams(vctx, n.d.cfg.AllowedUFS)
	if err != nil {
		return err
	}
	maps.Copy(props, secretOptions(secrets))
	if info, err := n.d.ns.GetStatus(ctx, path); err == nil && info.GetMountPoint() {
		return nil
	}
	if _, err := n.d.ns.Mkdir(ctx, meta.Parent(path), true, true, 0); err != nil {
		return err
	}
	err = n.d.ns.Mount(ctx, path, uri, readOnly, false, props)
	if errors.Is(err, meta.ErrAlreadyExists) {
		if info, serr := n.d.ns.GetStatus(ctx, path); serr == nil && info.GetMountPoint() {
			return nil // mounted meanwhile
		}
	}
	return err
}

func (n *nodeServer) NodeUnstageVolume(ctx context.Context, req *csipb.NodeUnstageVolumeRequest) (*csipb.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if id == "" || staging == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and staging target path are required")
	}
	unlock, err := n.lockVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, ok := n.stagedVol(id)
	if !ok {
		v = &stagedVolume{VolumeID: id, StagingPath: staging}
	}
	if err := n.stopDaemon(v); err != nil {
		return nil, status.Errorf(codes.Internal, "unstage volume %s: %v", id, err)
	}
	if err := n.forget(id); err != nil {
		return nil, status.Errorf(codes.Internal, "unstage volume %s: %v", id, err)
	}
	n.setStaged(id, nil)
	return &csipb.NodeUnstageVolumeResponse{}, nil
}

func (n *nodeServer) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if err := checkCapabilities([]*csipb.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	if req.GetVolumeContext()[ctxType] == "domain-socket" {
		return n.publishSocket(ctx, req)
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.FailedPrecondition, "staging target path is required: stage the volume first")
	}
	ro := req.GetReadonly() || readOnlyCap(req.GetVolumeCapability())
	unlock, err := n.lockVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, ok := n.stagedVol(id)
	if !ok || v.StagingPath != req.GetStagingTargetPath() {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s", id, req.GetStagingTargetPath())
	}
	if !n.healthy(v.StagingPath) {
		if err := n.restore(ctx, v); err != nil {
			return nil, status.Errorf(codes.Internal, "restore volume %s: %v", id, err)
		}
	}
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		for other := range v.Targets {
			if other != target {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s is single-writer and already published at %s", id, other)
			}
		}
	}
	if was, ok := v.Targets[target]; ok && n.listed(target) {
		if was != ro {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is published at %s with readonly=%t", id, target, was)
		}
		return &csipb.NodePublishVolumeResponse{}, nil
	}
	if err := n.bind(v.StagingPath, target, ro); err != nil {
		return nil, status.Errorf(codes.Internal, "publish volume %s: %v", id, err)
	}
	v.Targets[target] = ro
	if err := n.save(v); err != nil {
		return nil, status.Errorf(codes.Internal, "publish volume %s: %v", id, err)
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// publishSocket serves the inline ephemeral volume that hands a pod the
// local worker's domain-socket directory for short-circuit reads.
func (n *nodeServer) publishSocket(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	if n.cfg.DomainSocketDir == "" {
		return nil, status.Error(codes.FailedPrecondition, "this node plugin has no --domain-socket-dir: cannot publish the worker's domain socket")
	}
	if _, err := os.Stat(n.cfg.DomainSocketDir); err != nil {
		return nil, status.Errorf(codes.Unavailable, "worker domain-socket directory: %v", err)
	}
	unlock, err := n.lockVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if n.listed(req.GetTargetPath()) {
		return &csipb.NodePublishVolumeResponse{}, nil
	}
	if err := n.bind(n.cfg.DomainSocketDir, req.GetTargetPath(), false); err != nil {
		return nil, status.Errorf(codes.Internal, "publish domain socket: %v", err)
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

func (n *nodeServer) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	unlock, err := n.lockVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := n.unmount(target); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublish volume %s: %v", id, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "remove target %s: %v", target, err)
	}
	if v, ok := n.stagedVol(id); ok {
		delete(v.Targets, target)
		if err := n.save(v); err != nil {
			return nil, status.Errorf(codes.Internal, "unpublish volume %s: %v", id, err)
		}
	}
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

func (n *nodeServer) NodeGetVolumeStats(_ context.Context, req *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" || req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and volume path are required")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(req.GetVolumePath(), &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, status.Errorf(codes.NotFound, "volume path %s does not exist", req.GetVolumePath())
		}
		return nil, status.Errorf(codes.Internal, "statfs %s: %v (is its FUSE daemon alive?)", req.GetVolumePath(), err)
	}
	bs := st.Bsize
	return &csipb.NodeGetVolumeStatsResponse{
		Usage: []*csipb.VolumeUsage{
			{Unit: csipb.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
			{Unit: csipb.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
		},
	}, nil
}

func (n *nodeServer) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	var caps []*csipb.NodeServiceCapability
	for _, c := range []csipb.NodeServiceCapability_RPC_Type{
		csipb.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csipb.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csipb.NodeServiceCapability{Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: c}}})
	}
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (n *nodeServer) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return &csipb.NodeGetInfoResponse{
		NodeId:             n.d.cfg.NodeID,
		AccessibleTopology: &csipb.Topology{Segments: map[string]string{TopologyKey: n.d.cfg.NodeID}},
	}, nil
}
