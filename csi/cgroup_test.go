package csi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A fake cgroup tree (plain files): the real move needs root and would
// change this test process's cgroups; the e2e test does it for real.
func fakeHierarchy(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMoveToCgroupV1(t *testing.T) {
	root := t.TempDir()
	fakeHierarchy(t, filepath.Join(root, "memory"), map[string]string{"cgroup.procs": ""})
	fakeHierarchy(t, filepath.Join(root, "cpuset"), map[string]string{"cgroup.procs": "", "cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"})
	// A new cpuset cgroup starts empty; the kernel would create these files.
	fakeHierarchy(t, filepath.Join(root, "cpuset", "alcove-fuse"), map[string]string{"cpuset.cpus": "", "cpuset.mems": ""})
	fakeHierarchy(t, filepath.Join(root, "not-a-hierarchy"), nil)
	if err := moveToCgroup(root, "/alcove-fuse", 4242); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"memory", "cpuset"} {
		b, err := os.ReadFile(filepath.Join(root, h, "alcove-fuse", "cgroup.procs"))
		if err != nil || string(b) != "4242" {
			t.Errorf("%s: cgroup.procs = %q, %v", h, b, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "cpuset", "alcove-fuse", "cpuset.cpus")); strings.TrimSpace(string(b)) != "0-1" {
		t.Errorf("cpuset.cpus not inherited: %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "not-a-hierarchy", "alcove-fuse")); !os.IsNotExist(err) {
		t.Errorf("created a cgroup outside a hierarchy: %v", err)
	}
}

func TestMoveToCgroupV2(t *testing.T) {
	root := t.TempDir()
	fakeHierarchy(t, root, map[string]string{"cgroup.procs": ""})
	if err := moveToCgroup(root, "a/b", 7); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "a", "b", "cgroup.procs")); err != nil || string(b) != "7" {
		t.Errorf("cgroup.procs = %q, %v", b, err)
	}
}

func TestMoveToCgroupNoHierarchy(t *testing.T) {
	if err := moveToCgroup(t.TempDir(), "/x", 1); err == nil {
		t.Error("want an error for a root with no hierarchy")
	}
}
