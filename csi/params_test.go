package csi

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alcove-io/alcove/engine/meta"
)

func TestCheckUFS(t *testing.T) {
	for _, tc := range []struct {
		uri     string
		allowed []string
		ok      bool
	}{
		{"s3://bucket/p/x", []string{"s3://bucket/p"}, true},
		{"s3://bucket/p", []string{"s3://bucket/p/"}, true},
		{"s3://bucket/px", []string{"s3://bucket/p"}, false},
		{"s3://other/p", []string{"s3://bucket"}, false},
		{"s3://0", []string{"s3:"}, false}, // found by FuzzParams: "s3:" allowed every bucket
		{"file:///srv/data/set1", []string{"file:///srv/data"}, true},
		{"/srv/data/set1", []string{"file:///srv/data"}, true},
		{"file:///srv/database", []string{"file:///srv/data"}, false},
		{"file:///srv/data/../../etc", []string{"file:///srv/data"}, false},
		{"FILE:///srv/data/x", []string{"file:///srv/data"}, true},
		{"s3://any/x", nil, true},
		{"file:///x", nil, false},
		{"file:///x", []string{"s3://bucket"}, false},
	} {
		err := checkUFS(tc.uri, tc.allowed)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, meta.ErrPermission) && !errors.Is(err, meta.ErrInvalidArgument)) {
			t.Errorf("checkUFS(%q, %q) = %v, want ok=%t", tc.uri, tc.allowed, err, tc.ok)
		}
	}
}

// The volume's FUSE options reach the daemon's command line, and the node
// refuses a hand-written context whose replication is not a sane count.
func TestVolumeOptionsReachDaemon(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  map[string]string
		want []string // flags after the fixed ones
		bad  bool
	}{
		{name: "none", ctx: map[string]string{}},
		{name: "all", ctx: map[string]string{ctxWriteType: "THROUGH", ctxReadType: "NO_CACHE", ctxReplication: "2"},
			want: []string{"--write-type", "THROUGH", "--read-type", "NO_CACHE", "--replication-durable", "2"}},
		{name: "replication only", ctx: map[string]string{ctxReplication: "3"}, want: []string{"--replication-durable", "3"}},
		{name: "replication zero", ctx: map[string]string{ctxReplication: "0"}, bad: true},
		{name: "replication word", ctx: map[string]string{ctxReplication: "two"}, bad: true},
		{name: "replication flag", ctx: map[string]string{ctxReplication: "--debug"}, bad: true},
		{name: "replication huge", ctx: map[string]string{ctxReplication: "65"}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ctx[ctxPath] = "/volumes/v"
			_, err := volumePath("v", tc.ctx)
			if tc.bad {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("volumePath(%v) = %v, want InvalidArgument", tc.ctx, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v := &stagedVolume{VolumeID: "v", Path: "/volumes/v", StagingPath: "/stage", Context: tc.ctx}
			got := daemonArgs(v, "m:19998", "node-1")
			fixed := []string{"fuse", "--mount-point", "/stage", "--path", "/volumes/v", "--master", "m:19998", "--node-name", "node-1"}
			if !slices.Equal(got, append(fixed, tc.want...)) {
				t.Fatalf("daemon args %q, want %q after %q", got, tc.want, fixed)
			}
		})
	}
}

func TestParamsReplication(t *testing.T) {
	for v, ok := range map[string]bool{"1": true, "64": true, "0": false, "-1": false, "65": false, "x": false} {
		vp, err := parseParams(map[string]string{paramReplication: v}, nil)
		if ok != (err == nil) {
			t.Fatalf("replication=%q: %v, want ok=%v", v, err, ok)
		}
		if ok && vp.nodeParams[ctxReplication] != v {
			t.Fatalf("replication=%q: node context %v", v, vp.nodeParams)
		}
		if !ok && !errors.Is(err, meta.ErrInvalidArgument) {
			t.Fatalf("replication=%q: %v, want ErrInvalidArgument", v, err)
		}
	}
}
