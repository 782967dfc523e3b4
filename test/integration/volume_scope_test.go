package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/test/prereq"
)

// TestVolumeDaemonConfined: the CSI node plugin (node certificate) of an
// `alcove local` with TLS gives a volume's FUSE daemon the CA alone and a
// volume token. The daemon serves its volume (writes, reads, renames,
// unlink while open, chmod), and its credentials reach nothing outside the
// volume's directory: not another volume's file by path or by id, not a
// listing of /, not a rename out, not a mount, not another session's
// orphans; a client certificate cannot mint such tokens, and a tampered
// token is refused.
func TestVolumeDaemonConfined(t *testing.T) {
	prereq.Root(t)
	prereq.DevFuse(t)
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := newAttacker(t, c, security.RoleAdmin)
	fm := apiv1.NewFileSystemMasterClient(admin.master)
	for _, p := range []string{"/volumes/pvc-a", "/volumes/pvc-b"} {
		if _, err := fm.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: p, Recursive: true, Mode: 0o777}); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(src, []byte("volume B's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", src, "/volumes/pvc-b/secret")
	other := admin.status("/volumes/pvc-b/secret")

	// The node plugin stages volume A.
	dir := t.TempDir()
	socket, state := filepath.Join(dir, "csi.sock"), filepath.Join(dir, "state")
	plugin := exec.Command(c.bin, "csi", "--mode", "node", "--node-id", c.node, "--endpoint", "unix://"+socket,
		"--state-dir", state, "--master", c.master, "--check-interval", "200ms")
	var plog bytes.Buffer
	plugin.Stdout, plugin.Stderr = &plog, &plog
	plugin.Env = append(os.Environ(), "ALCOVE_TLS_DIR="+filepath.Join(c.dir, "tls", string(security.RoleNode)))
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plugin.Process.Signal(os.Interrupt); plugin.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node plugin did not create its socket:\n%s", plog.String())
		}
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() }) // after the unstage below
	node := csipb.NewNodeClient(conn)
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	rw := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	vctx := map[string]string{"path": "/volumes/pvc-a"}
	if _, err := node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "pvc-a", StagingTargetPath: staging, VolumeCapability: rw, VolumeContext: vctx}); err != nil {
		t.Fatalf("stage: %v\n%s", err, plog.String())
	}
	t.Cleanup(func() {
		node.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: "pvc-a", TargetPath: target})
		node.NodeUnstageVolume(context.Background(), &csipb.NodeUnstageVolumeRequest{VolumeId: "pvc-a", StagingTargetPath: staging})
	})
	if _, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "pvc-a", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rw, VolumeContext: vctx}); err != nil {
		t.Fatal(err)
	}

	// The daemon runs with the CA alone and a volume token.
	caDir, tokenFile := daemonCredentials(t, state)
	if _, err := os.Stat(filepath.Join(caDir, security.KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the FUSE daemon's TLS directory %s holds a private key (%v)", caDir, err)
	}

	// It serves its volume.
	data := bytes.Repeat([]byte("volume A "), 100000)
	if err := os.WriteFile(filepath.Join(target, "f"), data, 0o644); err != nil {
		t.Fatalf("write through the confined daemon: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
	if err := os.Mkdir(filepath.Join(target, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(target, &sfs); err != nil || sfs.Blocks == 0 {
		t.Fatalf("statfs: %+v %v", sfs, err)
	}
	if err := os.Symlink("d", filepath.Join(target, "link")); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 3 {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	if err := os.Rename(filepath.Join(target, "f"), filepath.Join(target, "d", "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(target, "d", "g"), 0o600); err != nil {
		t.Fatal(err)
	}
	open, err := os.Open(filepath.Join(target, "d", "g"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(target, "d", "g")); err != nil {
		t.Fatalf("unlink while open: %v", err)
	}
	buf := make([]byte, 9)
	if _, err := open.ReadAt(buf, 0); err != nil || string(buf) != "volume A " {
		t.Fatalf("read of the unlinked open file: %q %v", buf, err)
	}
	open.Close()
	if ents, err := os.ReadDir(filepath.Join(target, "d")); err != nil || len(ents) != 0 {
		t.Fatalf("after unlink: %v %v", ents, err)
	}

	// Its credentials reach nothing else.
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	caOnly, err := security.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	scoped, err := client.New(client.Config{MasterAddresses: []string{c.master}, Node: c.node, TLS: caOnly, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	defer scoped.Close()
	if _, err := scoped.GetStatus(ctx, "/volumes/pvc-a/d"); err != nil {
		t.Fatalf("the volume's own directory: %v", err)
	}
	for name, call := range map[string]func() error{
		"status of another volume's file": func() error { _, err := scoped.GetStatus(ctx, "/volumes/pvc-b/secret"); return err },
		"status of another volume's file by id": func() error {
			_, err := scoped.StatusByID(ctx, other.GetFileId())
			return err
		},
		"listing of /":           func() error { _, err := scoped.ListStatus(ctx, "/", false, false); return err },
		"rename out of a volume": func() error { return scoped.Rename(ctx, "/volumes/pvc-a/d", "/volumes/pvc-b/d", false) },
		"delete in another volume": func() error {
			return scoped.Delete(ctx, "/volumes/pvc-b/secret", false, false)
		},
		"mount":               func() error { return scoped.Mount(ctx, "/volumes/pvc-a/etc", "file:///etc", false, false, nil) },
		"mint a volume token": func() error { _, _, err := scoped.IssueVolumeToken(ctx, "/volumes/pvc-b"); return err },
	} {
		if err := call(); !errors.Is(err, meta.ErrPermission) {
			t.Errorf("%s with the daemon's token: %v, want PermissionDenied", name, err)
		}
	}
	if n, err := scoped.ReleaseOrphans(ctx, "fuse:"+c.node+":"+staging, nil); err != nil || n != 0 {
		t.Errorf("release another session's orphans: %d, %v", n, err)
	}
	if got := c.mustRun("fs", "cat", "/volumes/pvc-b/secret"); got != "volume B's data" {
		t.Fatalf("volume B's file reads %q", got)
	}
	// A client certificate cannot mint tokens; a tampered token is nothing.
	app := newAttacker(t, c, security.RoleClient)
	if _, err := apiv1.NewFileSystemMasterClient(app.master).IssueVolumeToken(ctx, &apiv1.IssueVolumeTokenRequest{Path: "/volumes/pvc-b"}); !errors.Is(meta.FromStatus(err), meta.ErrPermission) {
		t.Errorf("a client certificate mints a volume token: %v, want PermissionDenied", err)
	}
	forged := bytes.Clone(tok)
	forged[len(security.VolumeTokenPrefix)+3] ^= 1 // in the payload
	ff := filepath.Join(t.TempDir(), "forged")
	if err := os.WriteFile(ff, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := client.New(client.Config{MasterAddresses: []string{c.master}, Node: c.node, TLS: caOnly, TokenFile: ff})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, err := fc.GetStatus(ctx, "/volumes/pvc-a"); !errors.Is(err, meta.ErrUnauthenticated) {
		t.Errorf("a tampered volume token: %v, want Unauthenticated", err)
	}
}

// daemonCredentials reads the TLS directory and token file of the one FUSE
// daemon the plugin under state runs, from its environment.
func daemonCredentials(t *testing.T, state string) (tlsDir, tokenFile string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(state, "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d staged volumes in %s", len(files), state)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.PID == 0 {
		t.Fatalf("no pid in %s: %v", b, err)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(v.PID) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "ALCOVE_TLS_DIR="); ok {
			tlsDir = v
		}
		if v, ok := strings.CutPrefix(kv, "ALCOVE_TOKEN_FILE="); ok {
			tokenFile = v
		}
	}
	if tlsDir == "" || tokenFile == "" {
		t.Fatalf("the FUSE daemon runs with ALCOVE_TLS_DIR=%q ALCOVE_TOKEN_FILE=%q", tlsDir, tokenFile)
	}
	return tlsDir, tokenFile
}
