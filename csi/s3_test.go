package csi

import (
	"context"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/alcove-io/alcove/test/miniotest"
)

// TestUFSVolumeCredentialsFromSecrets: a StorageClass `ufs: s3://...` gets
// its credentials from the provisioner secret (CreateVolume.secrets), never
// from parameters; without them MinIO refuses the mount. Clients see the
// mount's secrets redacted.
func TestUFSVolumeCredentialsFromSecrets(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket()
	srv.Put(bucket, "data/words.txt", []byte("a b a\n"))
	d, c := newTestDriver(t)
	cs := &controllerServer{d: d}
	ctx := context.Background()
	params := map[string]string{"ufs": "s3://" + bucket + "/data", "ufsOption.alluxio.underfs.s3.endpoint": srv.Endpoint,
		"ufsOption.alluxio.underfs.s3.disable.dns.buckets": "true", "csi.storage.k8s.io/provisioner-secret-name": "s3-creds"}
	req := &csipb.CreateVolumeRequest{Name: "pvc-s3", VolumeCapabilities: mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), Parameters: params}
	_, err := cs.CreateVolume(ctx, req)
	wantCode(t, "CreateVolume without the provisioner secret", err, codes.PermissionDenied)

	req.Secrets = map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}
	resp, err := cs.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range resp.GetVolume().GetVolumeContext() {
		if strings.Contains(v, srv.SecretKey) || strings.Contains(v, srv.AccessKey) {
			t.Fatalf("volume context %s carries a credential", k)
		}
	}
	if info, err := c.GetStatus(ctx, "/volumes/pvc-s3/words.txt"); err != nil || info.GetLength() != 6 {
		t.Fatalf("object through the volume: %v, %v", info, err)
	}
	mts, err := c.MountTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mts {
		if m.GetAlcovePath() == "/volumes/pvc-s3" && m.GetProperties()["s3a.secretKey"] != "<redacted>" {
			t.Fatalf("mount table shows %v", m.GetProperties())
		}
	}
	if _, err := cs.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "pvc-s3"}); err != nil {
		t.Fatal(err)
	}
	if srv.Get(bucket, "data/words.txt") == nil {
		t.Fatal("deleting the volume deleted the bucket's data")
	}
}
