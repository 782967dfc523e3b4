package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/alcove-io/alcove/engine/meta"
)

// registrar registers the node plugin with kubelet through kubelet's
// plugin-registration socket directory, in process (no
// node-driver-registrar sidecar).
type registrar struct {
	registerapi.UnimplementedRegistrationServer
	n   *nodeServer
	srv *grpc.Server
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              meta.CSIDriver,
		Endpoint:          r.n.cfg.KubeletEndpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		r.n.log.Info("Registered with kubelet")
	} else {
		r.n.log.Error(errors.New(st.GetError()), "kubelet refused the plugin registration")
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// startRegistration listens on <kubelet-dir>/plugins_registry/csi.alcove.io-reg.sock.
func (n *nodeServer) startRegistration() error {
	if n.cfg.KubeletDir == "" {
		return nil
	}
	dir := filepath.Join(n.cfg.KubeletDir, "plugins_registry")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	sock := filepath.Join(dir, meta.CSIDriver+"-reg.sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", sock, err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	r := &registrar{n: n, srv: grpc.NewServer()}
	registerapi.RegisterRegistrationServer(r.srv, r)
	n.reg = r
	go r.srv.Serve(ln)
	n.log.Info("Plugin registration socket ready", "socket", sock, "endpoint", n.cfg.KubeletEndpoint)
	return nil
}
