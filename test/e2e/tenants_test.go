package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/security/kube"
	"github.com/alcove-io/alcove/engine/worker"
)

// TestTenantsKeptApart: users proven by ServiceAccount tokens (TokenReview
// against a real kube-apiserver) and a volume directory owned by its
// namespace's ServiceAccount group, as the CSI controller makes it. A pod
// identity of namespace A reads the file; one of namespace B is refused
// (PermissionDenied) and gets no block token; a token minted for another
// audience is refused (Unauthenticated).
func TestTenantsKeptApart(t *testing.T) {
	cp := startControlPlane(t, k8sBins(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	certs := filepath.Join(dir, "tls")
	if err := security.EnsureLocal(certs, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	load := func(r security.Role) *security.Source {
		s, err := security.Load(filepath.Join(certs, string(r)), r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	m, err := master.New(master.Config{Dir: filepath.Join(dir, "master"), Address: "127.0.0.1:0", RootUFS: filepath.Join(dir, "ufs"),
		TLS: load(security.RoleMaster), Users: kube.NewTokenReviewer(cp.cs, 0), Superusers: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	w, err := worker.New(worker.Config{MasterAddresses: []string{m.Addr()}, Address: "127.0.0.1:0", Node: "n1", DomainSocket: filepath.Join(dir, "sock"),
		DomainSocketGroup: -1, TLS: load(security.RoleWorker), HeartbeatInterval: 50 * time.Millisecond,
		Tiers: []blockstore.TierConfig{{Alias: "MEM", Dir: filepath.Join(dir, "mem"), QuotaBytes: 64 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })

	// The provisioner's view: the volume of a PVC in namespace ns-a.
	admin, err := client.New(client.Config{MasterAddresses: []string{m.Addr()}, Node: "n1", TLS: load(security.RoleAdmin), WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	vol := "/volumes/pvc-a"
	// As the CSI controller makes it: mode 0777 (FUSE users are numeric),
	// group of the PVC namespace's ServiceAccounts.
	if _, err := admin.Mkdir(ctx, vol, true, false, 0o777); err != nil {
		t.Fatal(err)
	}
	group := security.NamespaceGroup("ns-a")
	if err := admin.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: vol, Group: &group}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("tenant A "), 10000)
	wr, err := admin.Create(ctx, vol+"/data", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wr.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}

	// Pod identities: a ServiceAccount in each namespace, tokens for audience alcove.
	token := func(ns string, aud string) string {
		t.Helper()
		for _, obj := range []func() error{
			func() error {
				_, err := cp.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
				return err
			},
			func() error {
				_, err := cp.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{})
				return err
			},
		} {
			if err := obj(); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		tr, err := cp.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{aud}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, ns+"-"+aud+".token")
		if err := os.WriteFile(f, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pod := func(tokenFile string) *client.Client {
		c, err := client.New(client.Config{MasterAddresses: []string{m.Addr()}, Node: "n1", TLS: load(security.RoleClient), TokenFile: tokenFile})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b, wrongAud := pod(token("ns-a", security.Audience)), pod(token("ns-b", security.Audience)), pod(token("ns-b", "api"))

	r, err := a.OpenFile(ctx, vol+"/data", apiv1.ReadType_CACHE)
	if err != nil {
		t.Fatalf("namespace A opens its volume's file: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("namespace A reads %d bytes, err %v", len(got), err)
	}
	if _, err := b.OpenFile(ctx, vol+"/data", apiv1.ReadType_CACHE); !errors.Is(err, meta.ErrPermission) {
		t.Fatalf("namespace B opens namespace A's file: %v, want PermissionDenied", err)
	}
	if _, err := b.ListStatus(ctx, vol, false, false); !errors.Is(err, meta.ErrPermission) {
		t.Fatalf("namespace B lists namespace A's volume: %v, want PermissionDenied", err)
	}
	if _, err := b.Create(ctx, vol+"/planted", client.WriteOptions{}); !errors.Is(err, meta.ErrPermission) {
		t.Fatalf("namespace B creates in namespace A's volume: %v, want PermissionDenied", err)
	}
	if _, err := wrongAud.GetStatus(ctx, "/"); !errors.Is(err, meta.ErrUnauthenticated) {
		t.Fatalf("a token for another audience: %v, want Unauthenticated", err)
	}
	if err := b.Mount(ctx, "/etc", "file:///etc", false, false, nil); !errors.Is(err, meta.ErrPermission) {
		t.Fatalf("namespace B mounts: %v, want PermissionDenied", err)
	}
}
