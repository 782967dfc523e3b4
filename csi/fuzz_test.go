package csi

import (
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// paramsFrom builds a parameter map from lines "key=value" (the fuzzer's
// input form: a StorageClass's parameters).
func paramsFrom(text string) map[string]string {
	p := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, "=")
		p[k] = v
	}
	return p
}

// FuzzParams: StorageClass parameters as the provisioner passes them, with
// the driver's --allowed-ufs; the same input is also read as a PV's volume
// context (checkVolumeContext). Properties of the parameters: no panic; a refusal is
// InvalidArgument or PermissionDenied; an accepted path is clean; an
// accepted UFS URI, as the master will parse it, lies under an allowed
// prefix (and is never file:// when none is allowed); and the node accepts
// the volume context the controller derives from the parameters.
func FuzzParams(f *testing.F) {
	for _, s := range [][2]string{
		{"writeType=cache_through", ""},
		{"path=/data/train\nonDelete=retain\nreadType=CACHE_PROMOTE", ""},
		{"ufs=s3://datasets/words\nufsOption.s3.endpoint=http://minio:9000\nreadOnly=true\nreplication=2", ""},
		{"ufs=file:///srv/data/set1\nonDelete=delete", "file:///srv/data"},
		{"ufs=file:///srv/data/../../etc", "file:///srv/data"},
		{"ufs=file:///srv/data%2f..%2f..%2fetc", "file:///srv/data"},
		{"ufs=/etc", ""},
		{"ufs=FILE:///srv/data/x", "file:///srv/data/"},
		{"ufs=s3://other/x", "s3://datasets,file:///srv"},
		{"csi.storage.k8s.io/pvc/name=claim\npath=/a/../b", ""},
		{"path=/a\nufs=s3://b/c", ""},
		{"replication=0\nonDelete=maybe", ""},
		{"path=/volumes/pvc-1\nwriteType=CACHE_THROUGH\nreadType=CACHE", "pvc-1"},
		{"", "/data/static"},
		{"path=/v\nwriteType=--mount-point=/etc", "pvc-3"},
		{"path=relative\nreadType=x", "pvc-4"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, text, allowedList string) {
		var allowed []string
		if allowedList != "" {
			allowed = strings.Split(allowedList, ",")
		}
		checkVolumeContext(t, allowedList, paramsFrom(text))
		vp, err := parseParams(paramsFrom(text), allowed)
		if err != nil {
			if c := status.Code(meta.ToStatus(err)); c != codes.InvalidArgument && c != codes.PermissionDenied {
				t.Fatalf("parameters %q: %v maps to %v, want InvalidArgument or PermissionDenied", text, err, c)
			}
			return
		}
		if vp.path != "" {
			if c, err := meta.CleanPath(vp.path); err != nil || c != vp.path {
				t.Fatalf("accepted path %q is not clean (%q, %v)", vp.path, c, err)
			}
		}
		if vp.ufsURI != "" {
			checkAllowed(t, vp.ufsURI, allowed)
		}
		vctx := map[string]string{ctxPath: meta.Join("/volumes", "pvc-1")}
		if vp.path != "" {
			vctx[ctxPath] = vp.path
		}
		for k, v := range vp.nodeParams {
			vctx[k] = v
		}
		if _, err := volumePath("pvc-1", vctx); err != nil {
			t.Fatalf("the node refuses the context %v the controller made from %q: %v", vctx, text, err)
		}
	})
}

// checkVolumeContext reads the same lines as the volume context of a
// hand-written PV (volume handle: allowed). Properties: a refusal is
// InvalidArgument; an accepted path is clean; and the write and read types
// that go on the FUSE daemon's command line parse.
func checkVolumeContext(t *testing.T, id string, vctx map[string]string) {
	p, err := volumePath(id, vctx)
	if err != nil {
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("context %v: %v, want InvalidArgument", vctx, err)
		}
		return
	}
	if c, err := meta.CleanPath(p); err != nil || c != p {
		t.Fatalf("context %v: path %q is not clean", vctx, p)
	}
	if wt := vctx[ctxWriteType]; wt != "" {
		if _, err := meta.ParseWriteType(wt); err != nil {
			t.Fatalf("context %v: write type %q accepted: %v", vctx, wt, err)
		}
	}
	if rt := vctx[ctxReadType]; rt != "" {
		if _, err := meta.ParseReadType(rt); err != nil {
			t.Fatalf("context %v: read type %q accepted: %v", vctx, rt, err)
		}
	}
	if r := vctx[ctxReplication]; r != "" {
		if n, err := strconv.Atoi(r); err != nil || n < 1 || n > maxReplication {
			t.Fatalf("context %v: replication %q accepted", vctx, r)
		}
	}
}

// checkAllowed fails unless uri, parsed the way the master mounts it, lies
// at or under one of the allowed prefixes.
func checkAllowed(t *testing.T, uri string, allowed []string) {
	t.Helper()
	u, err := ufs.ParseURI(strings.TrimSpace(uri))
	if err != nil {
		t.Fatalf("accepted UFS %q does not parse for the master: %v", uri, err)
	}
	p, err := meta.CleanPath(u.Path)
	if err != nil {
		t.Fatalf("accepted UFS %q has a bad path: %v", uri, err)
	}
	if len(allowed) == 0 {
		if u.Scheme == "file" {
			t.Fatalf("accepted local UFS %q with no --allowed-ufs", uri)
		}
		return
	}
	for _, a := range allowed {
		r, err := ufs.ParseURI(strings.TrimSpace(a))
		if err != nil {
			continue
		}
		rp, err := meta.CleanPath(r.Path)
		if err == nil && r.Scheme == u.Scheme && r.Host == u.Host && meta.HasPrefix(p, rp) {
			return
		}
	}
	t.Fatalf("accepted UFS %q (%s://%s%s) is under none of %q", uri, u.Scheme, u.Host, p, allowed)
}
