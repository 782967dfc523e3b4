package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/test/miniotest"
)

// TestS3SecretsNeverShown: `alcove local` with its root UFS on MinIO (the
// credentials in the properties file) and a second bucket mounted with
// `fs mount --option` credentials, the daemons at -v=10. Every daemon log
// line, CLI answer and error, mount listing, stat, /metrics page and web
// page is searched for the secret key: it must never appear.
func TestS3SecretsNeverShown(t *testing.T) {
	srv := miniotest.Start(t)
	secret := srv.SecretKey // "alcove-test-secret-<random>": recognisable
	root, other := srv.NewBucket(), srv.NewBucket()
	srv.Put(root, "in/hello.txt", []byte("hello from S3\n"))
	srv.Put(other, "p/obj", []byte("other bucket\n"))
	opt := "alluxio.master.mount.table.root.option."
	conf := fmt.Sprintf("alluxio.master.mount.table.root.ufs=s3://%s/\n%ss3a.accessKeyId=%s\n%ss3a.secretKey=%s\n%salluxio.underfs.s3.endpoint=%s\n%salluxio.underfs.s3.disable.dns.buckets=true\n",
		root, opt, srv.AccessKey, opt, secret, opt, srv.Endpoint, opt)
	args := []string{"-v=10"}
	mnt := ""
	if os.Geteuid() == 0 { // the FUSE daemon's log too
		mnt = filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--fuse-mount", mnt)
	}
	c := newClusterConf(t, conf, args...)
	if mnt != "" {
		defer exec.Command("umount", "-l", mnt).Run()
	}

	var shown strings.Builder // everything a user or an operator can see
	record := func(what, out string, err error) {
		// The command line (echoed once at the start of the harness's
		// error) is the test's own input, not something Alcove shows.
		given := strings.ReplaceAll(what, secret, "<secret given>")
		fmt.Fprintf(&shown, "== %s\n%s\n", given, out)
		if err != nil {
			fmt.Fprintf(&shown, "error: %s\n", strings.Replace(err.Error(), what, given, 1))
		}
	}
	run := func(args ...string) string {
		out, err := c.run(args...)
		record(strings.Join(args, " "), out, err)
		return out
	}
	mustOK := func(args ...string) string {
		t.Helper()
		out, err := c.run(args...)
		record(strings.Join(args, " "), out, err)
		if err != nil {
			t.Fatalf("%v\nlog:\n%s", err, tail(c.log.String(), 4000))
		}
		return out
	}
	if got := mustOK("fs", "cat", "/in/hello.txt"); got != "hello from S3\n" {
		t.Fatalf("cat through the S3 root: %q", got)
	}
	mustOK(append([]string{"fs", "mount", "--readonly", "/other", "s3://" + other + "/p"}, srv.Options()...)...)
	mustOK("fs", "cat", "/other/obj")
	if mnt != "" {
		b, err := os.ReadFile(filepath.Join(mnt, "other", "obj"))
		record("read through FUSE", string(b), err)
		if err != nil || string(b) != "other bucket\n" {
			t.Fatalf("read through FUSE: %q, %v", b, err)
		}
	}
	listing := mustOK("fs", "mount")
	if !strings.Contains(listing, "s3a.secretKey=<redacted>") || !strings.Contains(listing, "alluxio.underfs.s3.endpoint="+srv.Endpoint) {
		t.Errorf("fs mount listing should show options with secrets redacted:\n%s", listing)
	}
	checkMountConfigRoles(t, c, secret)
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, []byte("written through\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustOK("fs", "copyFromLocal", "--write-type", "CACHE_THROUGH", local, "/in/written")
	for _, args := range [][]string{
		{"fs", "ls", "-R", "/"}, {"fs", "ls", "-f", "-o", "json", "/in"}, {"fs", "stat", "/in/hello.txt"}, {"fs", "stat", "-o", "json", "/other"},
		{"fs", "loadMetadata", "-R", "/"}, {"fs", "du", "-s", "/"}, {"fsadmin", "report", "summary"}, {"fsadmin", "report", "metrics"},
		{"fsadmin", "report", "capacity"},
	} {
		mustOK(args...)
	}
	// Errors: bad mounts, a missing object, then S3 down.
	run("fs", "mount", "/bad", "s3://"+other+"/p", "--option", "s3a.accessKeyId="+srv.AccessKey, "--option", "s3a.secretKey=wrong-"+secret[:8],
		"--option", "alluxio.underfs.s3.endpoint="+srv.Endpoint, "--option", "alluxio.underfs.s3.disable.dns.buckets=true")
	run("fs", "mount", "/bad2", "s3://no-such-bucket/", "--option", "s3a.accessKeyId="+srv.AccessKey, "--option", "s3a.secretKey="+secret,
		"--option", "alluxio.underfs.s3.endpoint="+srv.Endpoint, "--option", "alluxio.underfs.s3.disable.dns.buckets=true")
	run("fs", "mount", "/bad3", "s3://"+other+"/", "--option", "s3a.secretKey="+secret, "--option", "alluxio.underfs.s3.nope=1")
	run("fs", "cat", "/in/missing")
	srv.Put(root, "in/uncached", []byte("never read\n"))
	mustOK("fs", "loadMetadata", "/in/uncached")
	srv.Stop()
	if out, err := c.run("fs", "cat", "/in/uncached"); err == nil {
		t.Errorf("cat with S3 down succeeded: %q", out)
	} else {
		record("cat with S3 down", out, err)
		if !strings.Contains(out, srv.Endpoint) {
			t.Errorf("the error with S3 down does not name the endpoint %s: %s", srv.Endpoint, out)
		}
	}
	run("fs", "ls", "-f", "/in")
	run("fs", "copyFromLocal", "--write-type", "THROUGH", local, "/in/through")
	// Web pages and metrics of the master and the worker.
	for _, port := range []int{c.ports[1], c.ports[3]} {
		for _, path := range []string{"/", "/metrics"} {
			url := "http://127.0.0.1:" + strconv.Itoa(port) + path
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			record("GET "+url, string(b), nil)
		}
	}
	c.stop() // flush the daemons' last log lines
	logs := c.log.String()
	if !strings.Contains(logs, "Mount configuration handed out") {
		t.Error("the daemon log at -v=10 shows no mount configuration being handed to the worker: was it run at high verbosity?")
	}
	for what, text := range map[string]string{"daemon log": logs, "CLI output, errors, listings, web pages and metrics": shown.String()} {
		if i := strings.Index(text, secret[len("alcove-test-secret-"):]); i >= 0 {
			t.Errorf("the secret key appears in the %s: ...%s...", what, text[max(0, i-200):min(len(text), i+50)])
		}
	}
	t.Logf("searched %d bytes of daemon log and %d bytes of CLI, web and metrics output", len(logs), shown.Len())
}

// checkMountConfigRoles asks the master for the mounts' configurations with
// each role's certificate: only a worker gets GetMountConfig (with the
// secret in clear, which shows the refusals are not vacuous); every other
// role is refused, and GetMountTable answers them with secrets redacted.
func checkMountConfigRoles(t *testing.T, c *cluster, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, role := range security.Roles {
		if role == security.RoleMaster {
			continue // the master's certificate is a server's; it never calls itself
		}
		a := newAttacker(t, c, role)
		mt, err := apiv1.NewFileSystemMasterClient(a.master).GetMountTable(ctx, &apiv1.GetMountTableRequest{})
		if err != nil {
			t.Fatalf("GetMountTable as %s: %v", role, err)
		}
		if strings.Contains(mt.String(), secret) {
			t.Errorf("GetMountTable answers %s with a secret in clear", role)
		}
		var found bool
		for _, m := range mt.GetMountPoints() {
			cfg, err := apiv1.NewBlockMasterClient(a.master).GetMountConfig(ctx, &apiv1.GetMountConfigRequest{MountId: m.GetMountId()})
			switch {
			case role == security.RoleWorker && err != nil:
				t.Fatalf("GetMountConfig(%s) as a worker: %v", m.GetAlcovePath(), err)
			case role == security.RoleWorker:
				found = found || strings.Contains(cfg.String(), secret)
			case status.Code(err) != codes.PermissionDenied:
				t.Errorf("GetMountConfig(%s) as %s: %v, want PermissionDenied", m.GetAlcovePath(), role, err)
			}
		}
		if role == security.RoleWorker && !found {
			t.Errorf("no mount's configuration given to a worker holds the secret key (%d mounts)", len(mt.GetMountPoints()))
		}
	}
}
