// Package csi is Alcove's CSI driver (csi.alcove.io): a PersistentVolumeClaim
// with storageClassName alluxio becomes a directory of the Alcove namespace,
// mounted into pods through a FUSE daemon per volume per node.
package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/grpcstop"
	"github.com/alcove-io/alcove/engine/meta"
)

// TopologyKey is the topology segment NodeGetInfo reports.
const TopologyKey = "topology.alcove.io/node"

// Mode selects which CSI services a process serves.
type Mode string

// Modes.
const (
	ModeController Mode = "controller"
	ModeNode       Mode = "node"
	ModeAll        Mode = "all"
)

// Config configures the driver.
type Config struct {
	Endpoint string // unix:///path/csi.sock
	NodeID   string
	Mode     Mode
	Version  string
	// VolumeRoot is where CreateVolume makes directories (default /volumes).
	VolumeRoot string
	// AllowedUFS lists UFS URI prefixes StorageClasses may mount with the
	// `ufs` parameter. Local paths (file://) are refused unless listed.
	AllowedUFS []string
	// Node plugin settings.
	Node NodeConfig
}

// namespace is what the driver needs from Alcove (implemented by
// *client.Client).
type namespace interface {
	GetStatus(ctx context.Context, path string) (*apiv1.FileInfo, error)
	ListStatus(ctx context.Context, path string, recursive, syncUfs bool) ([]*apiv1.FileInfo, error)
	Mkdir(ctx context.Context, path string, recursive, allowExists bool, mode uint32) (*apiv1.FileInfo, error)
	Delete(ctx context.Context, path string, recursive, alcoveOnly bool) error
	Mount(ctx context.Context, path, ufsURI string, readOnly, shared bool, props map[string]string) error
	Unmount(ctx context.Context, path string) error
	Workers(ctx context.Context) ([]*apiv1.WorkerInfo, error)
	Create(ctx context.Context, path string, opts client.WriteOptions) (*client.Writer, error)
	OpenFile(ctx context.Context, path string, readType apiv1.ReadType) (*client.Reader, error)
	SetAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) error
}

var _ namespace = (*client.Client)(nil)

// Driver serves the CSI services.
type Driver struct {
	cfg  Config
	ns   namespace
	log  klog.Logger
	srv  *grpc.Server
	node *nodeServer

	mu sync.Mutex // serializes controller operations per driver (they are rare)
}

// New validates cfg and builds a driver over the namespace client.
func New(cfg Config, ns namespace) (*Driver, error) {
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("%w: --endpoint is required (unix:///path/csi.sock)", meta.ErrInvalidArgument)
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeAll
	case ModeController, ModeNode, ModeAll:
	default:
		return nil, fmt.Errorf("%w: mode %q: use controller, node or all", meta.ErrInvalidArgument, cfg.Mode)
	}
	if cfg.Mode != ModeController && cfg.NodeID == "" {
		return nil, fmt.Errorf("%w: --node-id is required for the node service", meta.ErrInvalidArgument)
	}
	if cfg.VolumeRoot == "" {
		cfg.VolumeRoot = meta.VolumesRoot
	}
	root, err := meta.CleanPath(cfg.VolumeRoot)
	if err != nil || root == "/" {
		return nil, fmt.Errorf("%w: volume root %q must be a directory below /", meta.ErrInvalidArgument, cfg.VolumeRoot)
	}
	cfg.VolumeRoot = root
	for _, a := range cfg.AllowedUFS {
		if _, _, err := parseUFSPrefix(a); err != nil {
			return nil, fmt.Errorf("--allowed-ufs %q: %w", a, err)
		}
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	d := &Driver{cfg: cfg, ns: ns, log: klog.Background().WithName("csi")}
	if cfg.Mode != ModeController {
		n, err := newNodeServer(d, cfg.Node)
		if err != nil {
			return nil, err
		}
		d.node = n
	}
	return d, nil
}

// socketPath parses unix:///path (or a bare path).
func socketPath(endpoint string) (string, error) {
	if filepath.IsAbs(endpoint) {
		return endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return "", fmt.Errorf("%w: endpoint %q: use unix:///path/to/csi.sock", meta.ErrInvalidArgument, endpoint)
	}
	return u.Path, nil
}

// Run serves until ctx is done.
func (d *Driver) Run(ctx context.Context) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	d.Stop()
	return nil
}

// Start listens on the endpoint and serves in the background.
func (d *Driver) Start(ctx context.Context) error {
	d.log = klog.FromContext(ctx).WithName("csi")
	path, err := socketPath(d.cfg.Endpoint)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	d.srv = grpc.NewServer(grpc.ChainUnaryInterceptor(d.logCalls))
	csipb.RegisterIdentityServer(d.srv, &identityServer{d: d})
	if d.cfg.Mode != ModeNode {
		csipb.RegisterControllerServer(d.srv, &controllerServer{d: d})
	}
	if d.node != nil {
		csipb.RegisterNodeServer(d.srv, d.node)
		if err := d.node.start(ctx); err != nil {
			ln.Close()
			return err
		}
	}
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.log.Error(err, "CSI server stopped")
		}
	}()
	d.log.Info("CSI driver serving", "endpoint", d.cfg.Endpoint, "mode", d.cfg.Mode, "node", d.cfg.NodeID)
	return nil
}

// Stop ends serving. Staged volumes keep their FUSE daemons.
func (d *Driver) Stop() {
	if d.node != nil {
		d.node.stop()
	}
	if d.srv != nil {
		grpcstop.Stop(d.srv, grpcstop.Grace)
	}
}

func (d *Driver) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if err != nil {
		d.log.Info("CSI call failed", "method", info.FullMethod, "duration", time.Since(start), "err", err)
	} else {
		d.log.V(2).Info("CSI call", "method", info.FullMethod, "duration", time.Since(start))
	}
	return resp, err
}
