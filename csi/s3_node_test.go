package csi_test

import (
	"context"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alcove-io/alcove/test/miniotest"
)

// TestStaticUFSVolumeNodeStageSecrets: a static PV naming an S3 UFS in its
// volume attributes is mounted by NodeStageVolume with the node-stage
// secret's credentials.
func TestStaticUFSVolumeNodeStageSecrets(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket()
	srv.Put(bucket, "x", []byte("static"))
	cl, p, staging, _ := setup(t)
	ctx := context.Background()
	vctx := map[string]string{"path": "/static/s3", "ufs": "s3://" + bucket + "/", "readOnly": "true",
		"ufsOption.alluxio.underfs.s3.endpoint": srv.Endpoint, "ufsOption.alluxio.underfs.s3.disable.dns.buckets": "true"}
	stage := &csipb.NodeStageVolumeRequest{VolumeId: "pv-static", StagingTargetPath: staging, VolumeContext: vctx,
		VolumeCapability: rwx}
	if _, err := p.node.NodeStageVolume(ctx, stage); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("NodeStage without the node-stage secret: %v, want PermissionDenied", err)
	}
	stage.Secrets = map[string]string{"s3a.accessKeyId": srv.AccessKey, "s3a.secretKey": srv.SecretKey}
	for range 2 { // idempotent
		if _, err := p.node.NodeStageVolume(ctx, stage); err != nil {
			t.Fatal(err)
		}
	}
	defer p.node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "pv-static", StagingTargetPath: staging})
	if info, err := cl.Client("n1").GetStatus(ctx, "/static/s3/x"); err != nil || info.GetLength() != 6 {
		t.Fatalf("object through the static volume: %v, %v", info, err)
	}
}
