package csi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
	"github.com/alcove-io/alcove/test/prereq"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func alcoveBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alcove-csi-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "alcove")
		if out, err := exec.Command("go", "build", "-o", binPath, "github.com/alcove-io/alcove/cmd/alcove").CombinedOutput(); err != nil {
			binErr = &buildError{err, string(out)}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// nodePlugin is a real `alcove csi --mode node` process.
type nodePlugin struct {
	t        *testing.T
	cmd      *exec.Cmd
	socket   string
	stateDir string
	master   string
	conn     *grpc.ClientConn
	node     csipb.NodeClient
}

func startNodePlugin(t *testing.T, socket, stateDir, master string, extra ...string) *nodePlugin {
	t.Helper()
	p := &nodePlugin{t: t, socket: socket, stateDir: stateDir, master: master}
	p.cmd = exec.Command(alcoveBin(t), append([]string{"csi", "--mode", "node", "--node-id", "n1", "--endpoint", "unix://" + socket,
		"--state-dir", stateDir, "--master", master, "--check-interval", "200ms"}, extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node plugin did not create its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.conn, p.node = conn, csipb.NewNodeClient(conn)
	return p
}

func (p *nodePlugin) kill9() {
	p.conn.Close()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func (p *nodePlugin) stop() {
	p.conn.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

var rwx = &csipb.VolumeCapability{
	AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
	AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
}

func write(t *testing.T, c *client.Client, path string, data []byte) {
	t.Helper()
	w, err := c.Create(context.Background(), path, client.WriteOptions{WriteType: apiv1.WriteType_CACHE_THROUGH, Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T, extra ...string) (*alcovetest.Cluster, *nodePlugin, string, string) {
	t.Helper()
	prereq.Root(t) // FUSE and bind mounts
	prereq.DevFuse(t)
	cl := alcovetest.Start(t, "n1")
	dir := t.TempDir()
	p := startNodePlugin(t, filepath.Join(dir, "csi.sock"), filepath.Join(dir, "state"), cl.MasterAddr, extra...)
	t.Cleanup(func() { p.stop() })
	return cl, p, filepath.Join(dir, "staging"), filepath.Join(dir, "target")
}

func TestNodeOrderIdempotencyAndErrors(t *testing.T) {
	cl, p, staging, target := setup(t)
	ctx := context.Background()
	if _, err := cl.Client("n1").Mkdir(ctx, "/volumes/v1", true, true, 0o777); err != nil {
		t.Fatal(err)
	}
	vctx := map[string]string{"path": "/volumes/v1", "replication": "1"} // the daemon takes --replication-durable
	pub := &csipb.NodePublishVolumeRequest{VolumeId: "v1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwx, VolumeContext: vctx}
	if _, err := p.node.NodePublishVolume(ctx, pub); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("publish before stage: %v, want FailedPrecondition", err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"stage without id", func() error {
			_, err := p.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{StagingTargetPath: staging, VolumeCapability: rwx})
			return err
		}, codes.InvalidArgument},
		{"stage without capability", func() error {
			_, err := p.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "v1", StagingTargetPath: staging})
			return err
		}, codes.InvalidArgument},
		{"stage an escaping path", func() error {
			_, err := p.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "v1", StagingTargetPath: staging, VolumeCapability: rwx,
				VolumeContext: map[string]string{"path": "/volumes/../../etc"}})
			return err
		}, codes.InvalidArgument},
		{"stage a missing path", func() error {
			_, err := p.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "v9", StagingTargetPath: staging, VolumeCapability: rwx,
				VolumeContext: map[string]string{"path": "/volumes/none"}})
			return err
		}, codes.NotFound},
		{"publish without target", func() error {
			_, err := p.node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "v1", StagingTargetPath: staging, VolumeCapability: rwx})
			return err
		}, codes.InvalidArgument},
		{"unpublish without id", func() error {
			_, err := p.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{TargetPath: target})
			return err
		}, codes.InvalidArgument},
		{"stats of an unknown path", func() error {
			_, err := p.node.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v1", VolumePath: filepath.Join(target, "nope")})
			return err
		}, codes.NotFound},
	} {
		if err := tc.call(); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	stage := &csipb.NodeStageVolumeRequest{VolumeId: "v1", StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: vctx}
	for i := 0; i < 2; i++ {
		if _, err := p.node.NodeStageVolume(ctx, stage); err != nil {
			t.Fatalf("stage #%d: %v", i, err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := p.node.NodePublishVolume(ctx, pub); err != nil {
			t.Fatalf("publish #%d: %v", i, err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "hello"), []byte("world"), 0o644); err != nil {
		t.Fatalf("write through the published volume: %v", err)
	}
	if info, err := cl.Client("n1").GetStatus(ctx, "/volumes/v1/hello"); err != nil || info.GetLength() != 5 {
		t.Fatalf("file written through the volume: %v, %v", info, err)
	}
	if _, err := p.node.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v1", VolumePath: target}); err != nil {
		t.Fatalf("volume stats: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := p.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v1", TargetPath: target}); err != nil {
			t.Fatalf("unpublish #%d: %v", i, err)
		}
		if _, err := p.node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "v1", StagingTargetPath: staging}); err != nil {
			t.Fatalf("unstage #%d: %v", i, err)
		}
	}
	if mounted(t, staging) || mounted(t, target) {
		t.Fatal("mounts left behind after unstage")
	}
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(" "+p+" "))
}

// stageAndPublish puts a file of size bytes in a new volume and publishes it.
func stageAndPublish(t *testing.T, cl *alcovetest.Cluster, p *nodePlugin, staging, target string, size int) []byte {
	t.Helper()
	ctx := context.Background()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(data)
	write(t, cl.Client("n1"), "/volumes/v2/big", data)
	vctx := map[string]string{"path": "/volumes/v2"}
	if _, err := p.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "v2", StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: vctx}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "v2", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwx, VolumeContext: vctx}); err != nil {
		t.Fatal(err)
	}
	return data
}

// Acceptance 3a: kill -9 the node plugin while a reader streams through a
// published volume, start it again: the reader sees no error.
func TestNodePluginKilledWhileReading(t *testing.T) {
	cl, p, staging, target := setup(t)
	data := stageAndPublish(t, cl, p, staging, target, 64<<20)
	f, err := os.Open(filepath.Join(target, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if i == 8 { // part-way through: the plugin dies, then comes back
			p.kill9()
			*p = *startNodePlugin(t, p.socket, p.stateDir, p.master)
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d MiB: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("bytes read across the plugin restart differ")
	}
	// The restarted plugin knows the volume: unpublish and unstage work.
	ctx := context.Background()
	if _, err := p.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v2", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "v2", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// Acceptance 3b: kill -9 the FUSE daemon; the plugin's mount check restores
// the staging mount and the published target.
func TestFuseDaemonKilledIsRestored(t *testing.T) {
	cl, p, staging, target := setup(t)
	data := stageAndPublish(t, cl, p, staging, target, 3<<20)
	pid := daemonPID(t, p.stateDir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := os.ReadFile(filepath.Join(target, "big"))
		if err == nil && bytes.Equal(got, data) && daemonPID(t, p.stateDir) != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount not restored 30 s after the FUSE daemon died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx := context.Background()
	p.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v2", TargetPath: target})
	p.node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "v2", StagingTargetPath: staging})
}

// daemonPID reads the FUSE daemon's pid from the plugin's state file.
func daemonPID(t *testing.T, stateDir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("state files: %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.PID
}

// The inline ephemeral volume {type: domain-socket} hands a pod the local
// worker's domain-socket directory; the socket answers through it.
func TestDomainSocketVolume(t *testing.T) {
	sockDir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(sockDir, "domain.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	_, p, _, target := setup(t, "--domain-socket-dir", sockDir)
	ctx := context.Background()
	req := &csipb.NodePublishVolumeRequest{VolumeId: "inline-1", TargetPath: target, VolumeCapability: rwx,
		VolumeContext: map[string]string{"type": "domain-socket", "csi.storage.k8s.io/ephemeral": "true"}}
	for i := 0; i < 2; i++ {
		if _, err := p.node.NodePublishVolume(ctx, req); err != nil {
			t.Fatalf("publish #%d: %v", i, err)
		}
	}
	c, err := net.Dial("unix", filepath.Join(target, "domain.sock"))
	if err != nil {
		t.Fatalf("dial the socket through the published volume: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "ok" {
		t.Fatalf("socket through the volume answered %q", b)
	}
	if _, err := p.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "inline-1", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if mounted(t, target) {
		t.Fatal("socket volume still mounted after unpublish")
	}
}

// The node plugin registers itself with kubelet through the
// plugin-registration socket (no node-driver-registrar).
func TestKubeletRegistration(t *testing.T) {
	kubelet := t.TempDir()
	_, p, _, _ := setup(t, "--kubelet-dir", kubelet)
	reg := filepath.Join(kubelet, "plugins_registry", "csi.alcove.io-reg.sock")
	conn, err := grpc.NewClient("unix://"+reg, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := registerapi.NewRegistrationClient(conn)
	info, err := rc.GetInfo(context.Background(), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo on %s: %v", reg, err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != "csi.alcove.io" || info.GetEndpoint() != p.socket || len(info.GetSupportedVersions()) == 0 {
		t.Fatalf("plugin info %+v", info)
	}
	if _, err := rc.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
}
