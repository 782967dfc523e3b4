package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// canI is one `kubectl auth can-i` question asked as a service account of
// the release.
type canI struct {
	sa    string // service account name without the release prefix ("" = the workers'), or a full system:serviceaccount:NS:NAME
	verb  string
	res   string // resource[.group][/subresource][ name]
	ns    string // "" = all namespaces (-A)
	allow bool
}

// rbacChecks lists what each component may and may not do: every grant the
// code uses (client-go calls of the extender's informers, the DataLoad
// controller and the csi-provisioner sidecar) is allowed, and the verbs the
// chart used to grant or that nobody should have are denied. The CSI
// controller's secret access depends on csi.provisionerSecrets, so it is
// not asked here.
var rbacChecks = []canI{
	{"extender", "list", "persistentvolumeclaims", "", true},
	{"extender", "watch", "persistentvolumes", "", true},
	{"extender", "watch", "storageclasses.storage.k8s.io", "", true},
	{"extender", "list", "pods", "", false}, // kube-scheduler sends the pod
	{"extender", "get", "persistentvolumeclaims", testNS, false},
	{"extender", "get", "secrets", testNS, false},
	{"extender", "update", "persistentvolumeclaims", testNS, false},

	{"job-master", "list", "dataloads.alcove.io", "", true},
	{"job-master", "update", "dataloads.alcove.io", testNS, true},
	{"job-master", "update", "dataloads.alcove.io/status", testNS, true},
	{"job-master", "create", "events", testNS, true},
	{"job-master", "list", "nodes", "", true},
	{"job-master", "update", "pods", testNS, true},
	{"job-master", "get", "dataloads.alcove.io", testNS, false},
	{"job-master", "delete", "dataloads.alcove.io", testNS, false},
	{"job-master", "create", "pods", testNS, false},
	{"job-master", "delete", "pods", testNS, false},
	{"job-master", "get", "secrets", testNS, false},
	{"job-master", "update", "nodes", "", false},

	{"csi-controller", "create", "persistentvolumes", "", true},
	{"csi-controller", "update", "persistentvolumeclaims", testNS, true},
	{"csi-controller", "create", "leases.coordination.k8s.io", releaseNS, true},
	{"csi-controller", "create", "leases.coordination.k8s.io", "default", false},
	{"csi-controller", "delete", "persistentvolumeclaims", testNS, false},
	{"csi-controller", "create", "pods", testNS, false},

	{"csi-node", "get", "pods", testNS, false},
	{"csi-node", "list", "nodes", "", false},
	{"csi-node", "get", "secrets", releaseNS, false},
	{"", "get", "pods", releaseNS, false},
	{"", "list", "nodes", "", false},
	{"", "get", "secrets", releaseNS, false},
	{"", "create", "tokenreviews.authentication.k8s.io", "", false},

	// auth.kubernetes: the masters verify pods' tokens, and do nothing else.
	{"master", "create", "tokenreviews.authentication.k8s.io", "", true},
	{"master", "get", "pods", releaseNS, false},
	{"master", "list", "nodes", "", false},
	{"master", "get", "secrets", releaseNS, false},
	{"master", "create", "subjectaccessreviews.authorization.k8s.io", "", false},
}

// certsRBACChecks: the TLS hook's ServiceAccount reads and replaces the
// release's TLS Secrets by name, creates Secrets in the release namespace
// (RBAC cannot limit create by name), and nothing else. Asked in
// TestChartRBAC only: on a live cluster the hook's Role is deleted once the
// hook succeeded.
var certsRBACChecks = []canI{
	{"certs", "get", "secrets " + release + "-tls-master", releaseNS, true},
	{"certs", "update", "secrets " + release + "-tls-ca", releaseNS, true},
	{"certs", "update", "secrets " + release + "-tls-node", releaseNS, true},
	{"certs", "create", "secrets", releaseNS, true},
	{"certs", "get", "secrets", releaseNS, false},
	{"certs", "get", "secrets " + release + "-s3", releaseNS, false},
	{"certs", "list", "secrets", releaseNS, false},
	{"certs", "delete", "secrets " + release + "-tls-ca", releaseNS, false},
	{"certs", "create", "secrets", "default", false},
	{"certs", "get", "pods", releaseNS, false},
}

// rbac asks every rbacChecks question on the e2e cluster.
func (c *cluster) rbac(ctx context.Context) error {
	allowed, denied, err := askRBAC(ctx, rbacChecks, func(args ...string) (string, error) { return c.kubectl(ctx, args...) })
	fmt.Printf("      kubectl auth can-i: %d grants allowed, %d denied as expected\n", allowed, denied)
	return err
}

// askRBAC asks every rbacChecks question with `kubectl auth can-i --as` and
// reports all the wrong answers.
func askRBAC(ctx context.Context, checks []canI, kubectl func(args ...string) (string, error)) (allowed, denied int, err error) {
	var errs []error
	for _, q := range checks {
		if ctx.Err() != nil {
			return allowed, denied, ctx.Err()
		}
		sa := "system:serviceaccount:" + releaseNS + ":" + release
		switch {
		case strings.HasPrefix(q.sa, "system:"):
			sa = q.sa
		case q.sa != "":
			sa += "-" + q.sa
		}
		res, name, _ := strings.Cut(q.res, " ")
		res, sub, _ := strings.Cut(res, "/") // can-i reads RESOURCE/NAME: a subresource is a flag
		if name != "" {
			res += "/" + name
		}
		args := []string{"auth", "can-i", q.verb, res, "--as=" + sa}
		if sub != "" {
			args = append(args, "--subresource="+sub)
		}
		if q.ns == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "-n", q.ns)
		}
		out, err := kubectl(args...)
		// can-i exits 1 for "no": the answer is on stdout either way.
		answer := strings.TrimSpace(out)
		if answer != "yes" && answer != "no" {
			errs = append(errs, fmt.Errorf("%s: can-i %s %s: %q, %v", sa, q.verb, q.res, answer, err))
			continue
		}
		if got := answer == "yes"; got != q.allow {
			errs = append(errs, fmt.Errorf("%s may %s %s (ns %q): %s, want %t", sa, q.verb, q.res, q.ns, answer, q.allow))
			continue
		}
		if q.allow {
			allowed++
		} else {
			denied++
		}
	}
	return allowed, denied, errors.Join(errs...)
}

// TestChartRBAC applies the chart's access objects (default values, as
// deploy/manifests) to a real kube-apiserver with RBAC authorization and asks
// the rbacChecks questions: the grants are checked in `make test`, without a
// kubelet.
func TestChartRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the real control plane test")
	}
	bins := k8sBins(t)
	tools := k8sBins(t, "helm", "kubectl")
	cp := startControlPlane(t, bins)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(stdin string, name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(tools, name), append([]string{"--kubeconfig", cp.kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return out.String(), nil
	}
	rendered, err := run("", "helm", "template", release, filepath.Join(repoRoot(t), "deploy", "helm", "alcove"), "-n", releaseNS, "--include-crds")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "kubectl", "create", "namespace", releaseNS); err != nil {
		t.Fatal(err)
	}
	if _, err := run(rbacObjects(rendered), "kubectl", "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "kubectl", "wait", "--for=condition=Established", "--timeout=60s", "crd/dataloads.alcove.io"); err != nil {
		t.Fatal(err)
	}
	allowed, denied, err := askRBAC(ctx, append(rbacChecks, certsRBACChecks...), func(args ...string) (string, error) { return run("", "kubectl", args...) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl auth can-i: %d grants allowed, %d denied as expected", allowed, denied)
}

// rbacObjects keeps the documents of a rendered chart that decide access,
// and the CRD (this control plane admits no privileged pods, and runs none).
func rbacObjects(rendered string) string {
	var keep []string
	for _, doc := range strings.Split(rendered, "\n---") {
		for _, line := range strings.Split(doc, "\n") {
			switch line { // the top-level kind (not a roleRef's or a subject's)
			case "kind: ServiceAccount", "kind: ClusterRole", "kind: ClusterRoleBinding", "kind: Role", "kind: RoleBinding",
				"kind: CustomResourceDefinition": // can-i resolves dataloads.alcove.io by discovery
				keep = append(keep, doc)
			}
		}
	}
	return strings.Join(keep, "\n---")
}
