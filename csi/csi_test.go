package csi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// newTestDriver runs a real master and worker in process and returns a
// controller-mode driver over a real client, plus the client.
func newTestDriver(t *testing.T, allowedUFS ...string) (*Driver, *client.Client) {
	t.Helper()
	c := alcovetest.Start(t, "n1").Client("n1")
	d, err := New(Config{Endpoint: "unix://" + filepath.Join(t.TempDir(), "csi.sock"), Mode: ModeController, AllowedUFS: allowedUFS}, c)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) []*csipb.VolumeCapability {
	return []*csipb.VolumeCapability{{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}}
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

func TestCreateDeleteIdempotent(t *testing.T) {
	d, c := newTestDriver(t)
	cs := &controllerServer{d: d}
	ctx := context.Background()
	req := &csipb.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 1 << 30}, Parameters: map[string]string{"writeType": "cache_through"}}
	var first *csipb.Volume
	for i := 0; i < 3; i++ {
		resp, err := cs.CreateVolume(ctx, req)
		if err != nil {
			t.Fatalf("CreateVolume #%d: %v", i, err)
		}
		if first == nil {
			first = resp.GetVolume()
		} else if resp.GetVolume().String() != first.String() {
			t.Fatalf("repeated CreateVolume returned %v, first %v", resp.GetVolume(), first)
		}
	}
	if first.GetVolumeContext()["path"] != "/volumes/pvc-1" || first.GetVolumeContext()["writeType"] != "CACHE_THROUGH" {
		t.Fatalf("volume context %v", first.GetVolumeContext())
	}
	if info, err := c.GetStatus(ctx, "/volumes/pvc-1"); err != nil || !info.GetFolder() {
		t.Fatalf("volume directory: %v, %v", info, err)
	}
	// Same name, other capacity: AlreadyExists.
	req2 := &csipb.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: req.VolumeCapabilities, CapacityRange: &csipb.CapacityRange{RequiredBytes: 2 << 30}}
	_, err := cs.CreateVolume(ctx, req2)
	wantCode(t, "create with another capacity", err, codes.AlreadyExists)

	list, err := cs.ListVolumes(ctx, &csipb.ListVolumesRequest{})
	if err != nil || len(list.GetEntries()) != 1 {
		t.Fatalf("ListVolumes = %v, %v", list, err)
	}
	for i := 0; i < 3; i++ {
		if _, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "pvc-1"}); err != nil {
			t.Fatalf("DeleteVolume #%d: %v", i, err)
		}
	}
	if _, err := c.GetStatus(ctx, "/volumes/pvc-1"); err == nil {
		t.Fatal("volume directory survived DeleteVolume")
	}
	_, err = cs.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-1", VolumeCapabilities: req.VolumeCapabilities})
	wantCode(t, "validate a deleted volume", err, codes.NotFound)
}

func TestBoundPathAndRetain(t *testing.T) {
	d, c := newTestDriver(t)
	cs := &controllerServer{d: d}
	ctx := context.Background()
	if _, err := c.Mkdir(ctx, "/datasets/imagenet", true, true, 0); err != nil {
		t.Fatal(err)
	}
	caps := mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	resp, err := cs.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "ds", VolumeCapabilities: caps, Parameters: map[string]string{"path": "/datasets/imagenet"}})
	if err != nil || resp.GetVolume().GetVolumeContext()["path"] != "/datasets/imagenet" {
		t.Fatalf("bind path: %v, %v", resp, err)
	}
	if _, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "ds"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetStatus(ctx, "/datasets/imagenet"); err != nil {
		t.Fatalf("a bound path must survive DeleteVolume: %v", err)
	}
	if _, err := cs.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "keep", VolumeCapabilities: caps, Parameters: map[string]string{"onDelete": "retain"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "keep"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetStatus(ctx, "/volumes/keep"); err != nil {
		t.Fatalf("onDelete=retain: directory gone: %v", err)
	}
}

func TestUFSVolume(t *testing.T) {
	ufsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(ufsDir, "bucket"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, c := newTestDriver(t, "file://"+ufsDir)
	cs := &controllerServer{d: d}
	ctx := context.Background()
	caps := mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	params := map[string]string{"ufs": "file://" + ufsDir + "/bucket", "readOnly": "true"}
	for i := 0; i < 2; i++ {
		if _, err := cs.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "u", VolumeCapabilities: caps, Parameters: params}); err != nil {
			t.Fatalf("CreateVolume #%d: %v", i, err)
		}
	}
	if info, err := c.GetStatus(ctx, "/volumes/u"); err != nil || !info.GetMountPoint() {
		t.Fatalf("UFS volume is not a mount point: %v, %v", info, err)
	}
	if _, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "u"}); err != nil {
		t.Fatal(err)
	}
	if mts, _ := c.MountTable(ctx); len(mts) != 1 {
		t.Fatalf("mount table after DeleteVolume: %v", mts)
	}
}

func TestControllerBadInput(t *testing.T) {
	d, _ := newTestDriver(t, "s3://allowed-bucket")
	cs := &controllerServer{d: d}
	ctx := context.Background()
	caps := mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	block := []*csipb.VolumeCapability{{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}
	for _, tc := range []struct {
		name   string
		req    *csipb.CreateVolumeRequest
		code   codes.Code
		substr string
	}{
		{"no name", &csipb.CreateVolumeRequest{VolumeCapabilities: caps}, codes.InvalidArgument, "name"},
		{"name with slash", &csipb.CreateVolumeRequest{Name: "../etc", VolumeCapabilities: caps}, codes.InvalidArgument, "path component"},
		{"no capabilities", &csipb.CreateVolumeRequest{Name: "v"}, codes.InvalidArgument, "capabilities"},
		{"block", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: block}, codes.InvalidArgument, "block"},
		{"path escaping the root", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"path": "/a/../../etc"}}, codes.InvalidArgument, "escapes"},
		{"relative path", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"path": "data"}}, codes.InvalidArgument, "absolute"},
		{"missing bound path", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"path": "/nope"}}, codes.InvalidArgument, "does not exist"},
		{"local UFS not allowed", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"ufs": "file:///etc"}}, codes.PermissionDenied, "outside"},
		{"UFS escaping its prefix", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"ufs": "s3://allowed-bucket/../other"}}, codes.InvalidArgument, "escapes"},
		{"other bucket", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"ufs": "s3://other-bucket/x"}}, codes.PermissionDenied, "outside"},
		{"unknown parameter", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"colour": "blue"}}, codes.InvalidArgument, "unknown"},
		{"bad write type", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"writeType": "FAST"}}, codes.InvalidArgument, "write type"},
		{"capacity over limit", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, CapacityRange: &csipb.CapacityRange{RequiredBytes: 10, LimitBytes: 5}}, codes.OutOfRange, "exceed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cs.CreateVolume(ctx, tc.req)
			wantCode(t, tc.name, err, tc.code)
			if !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("%v: want it to mention %q", err, tc.substr)
			}
		})
	}
	_, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{})
	wantCode(t, "delete without id", err, codes.InvalidArgument)
	_, err = cs.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: "nope", VolumeCapabilities: caps})
	wantCode(t, "validate unknown", err, codes.NotFound)
	_, err = cs.ListVolumes(ctx, &csipb.ListVolumesRequest{StartingToken: "bogus"})
	wantCode(t, "bad token", err, codes.Aborted)
}

func TestNewConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Endpoint: "unix:///x.sock", Mode: "both"},
		{Endpoint: "unix:///x.sock", Mode: ModeNode},
		{Endpoint: "unix:///x.sock", Mode: ModeController, VolumeRoot: "/"},
		{Endpoint: "unix:///x.sock", Mode: ModeController, AllowedUFS: []string{"s3://b/p", "relative/dir"}},
		{Endpoint: "unix:///x.sock", Mode: ModeController, AllowedUFS: []string{"file:///data?x"}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
