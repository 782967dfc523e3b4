package fuse

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/test/prereq"
)

// TestDeleteLoop: create → unlink → check, 1,000 times through the mount
// with ASYNC_THROUGH and with CACHE_THROUGH; nothing may come back, in the
// namespace or in the UFS, once the persists in flight are done (issue
// 16: 10 of 30 files came back when a persist finished after the delete).
func TestDeleteLoop(t *testing.T) {
	rounds := 1000
	if testing.Short() {
		rounds = 200
	}
	for _, wt := range []apiv1.WriteType{apiv1.WriteType_ASYNC_THROUGH, apiv1.WriteType_CACHE_THROUGH} {
		t.Run(wt.String(), func(t *testing.T) {
			e := mountEnv(t, clusterOpts{writeType: wt}, nil)
			dir := e.p("loop")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			data := randData(9, 64<<10)
			for i := range rounds {
				p := filepath.Join(dir, fmt.Sprintf("f%d", i%7))
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatalf("round %d: create: %v", i, err)
				}
				if err := os.Remove(p); err != nil {
					t.Fatalf("round %d: unlink: %v", i, err)
				}
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Fatalf("round %d: %s is back (%v)", i, p, err)
				}
			}
			// Nothing in the namespace, with the UFS listing merged, and
			// nothing in the UFS directory (temporary objects at the
			// mount's root included) once the persists in flight ended.
			ctx := context.Background()
			deadline := time.Now().Add(time.Minute)
			for {
				left := leftovers(t, e, ctx)
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("left behind after %d rounds: %v", rounds, left)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Fatalf("the mount lists %v (%v)", ents, err)
			}
		})
	}
}

// leftovers lists what remains of the loop: in the namespace (with a UFS
// sync) and in the UFS (ls -f: every name, temporaries included).
func leftovers(t *testing.T, e *env, ctx context.Context) []string {
	t.Helper()
	var left []string
	infos, err := e.c.ListStatus(ctx, "/loop", false, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range infos {
		left = append(left, "alcove:"+fi.GetPath())
	}
	for _, d := range []string{e.ufs, filepath.Join(e.ufs, "loop")} {
		f, err := os.Open(d)
		if os.IsNotExist(err) && d != e.ufs {
			// ASYNC_THROUGH makes the UFS directory with the first
			// persist; a new file deleted before it persists never
			// makes it (files are created incomplete, not persisted
			// empty at create).
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if d == e.ufs && n == "loop" {
				continue
			}
			left = append(left, "ufs:"+filepath.Join(d, n))
		}
	}
	return left
}

// TestRemovedDirBindMount is issue 17's subPath case: a directory of the
// mount is bind-mounted elsewhere and then removed; the bind mount still
// answers stat (nlink 0, like tmpfs) instead of ENOENT, and unmounts.
func TestRemovedDirBindMount(t *testing.T) {
	e := mountEnv(t, clusterOpts{}, nil)
	src := e.p("subpath")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(e.dir, "bind")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	mounted := true
	defer func() {
		if mounted {
			syscall.Unmount(dst, syscall.MNT_DETACH)
		}
	}()
	if err := syscall.Rmdir(src); err != nil {
		t.Fatalf("rmdir the bind mount's source: %v", err)
	}
	// The kernel invalidated the directory's attributes at the rmdir:
	// this stat asks the daemon.
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatalf("stat of the bind mount of a removed directory: %v (kubelet takes ENOENT for \"not mounted\")", err)
	}
	if st.Nlink != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		t.Fatalf("stat: nlink %d mode %o, want a directory with no links", st.Nlink, st.Mode)
	}
	if err := syscall.Unmount(dst, 0); err != nil {
		t.Fatalf("unmount the bind mount: %v", err)
	}
	mounted = false
}

// TestPythonVenv: a virtualenv created on the mount runs — symlinks
// (bin/python), modes (executables), renames and many small files together.
// It needs python3 with venv and ensurepip: it skips without them, under
// CI too (the CI machine has Go, gcc, git and make only).
func TestPythonVenv(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import ensurepip, venv").Run()
	}
	if err != nil {
		prereq.Missing(t, "python3 with venv and ensurepip (%v; hack/python-venv.sh installs them)", err)
	}
	e := mountEnv(t, clusterOpts{writeType: apiv1.WriteType_ASYNC_THROUGH, quota: 512 << 20}, nil)
	venv := e.p("venv")
	run := func(name string, args ...string) string {
		t.Helper()
		// Through sh: this process serves the mount, and Go forks with
		// vfork, so an execve of a program on the mount from here would
		// stall in the kernel while a GC stops the world, with the FUSE
		// server stopped too (a deadlock seen in CI). sh execs it instead.
		cmd := exec.Command("/bin/sh", append([]string{"-c", `exec "$0" "$@"`, name}, args...)...)
		cmd.Env = append(os.Environ(), "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(py, "-m", "venv", venv)
	target, err := os.Readlink(filepath.Join(venv, "bin", "python"))
	if err != nil {
		t.Fatalf("bin/python is not a symlink: %v", err)
	}
	t.Logf("bin/python -> %s", target)
	if out := run(filepath.Join(venv, "bin", "pip"), "--version"); !strings.Contains(out, venv) {
		t.Fatalf("pip --version does not run from the venv: %s", out)
	}
	if out := run(filepath.Join(venv, "bin", "python"), "-c", "import sys; print(sys.prefix)"); strings.TrimSpace(out) != venv {
		t.Fatalf("sys.prefix %q, want %s", out, venv)
	}
}

// TestLongNamesPersist: names up to 255 bytes and a path of PATH_MAX
// bytes below the mount reach the UFS with the write types that write it
// (a temporary name built from the real one, or the host's PATH_MAX for
// the UFS path, made them fail with EIO).
func TestLongNamesPersist(t *testing.T) {
	for _, wt := range []apiv1.WriteType{apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_ASYNC_THROUGH} {
		t.Run(wt.String(), func(t *testing.T) {
			e := mountEnv(t, clusterOpts{writeType: wt}, nil)
			var want []string // Alcove paths
			for _, l := range []int{235, 250, 255} {
				name := strings.Repeat("n", l)
				if err := os.WriteFile(e.p(name), []byte(name[:8]), 0o644); err != nil {
					t.Fatalf("create a %d-byte name: %v", l, err)
				}
				want = append(want, "/"+name)
			}
			// 16 levels of 250 bytes and a last name: 4094 bytes below
			// the mount, made with *at calls from the mount's fd.
			fd, err := syscall.Open(e.mnt, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			rel := ""
			for range 16 {
				comp := strings.Repeat("p", 250)
				if err := syscall.Mkdirat(fd, comp, 0o755); err != nil {
					t.Fatalf("mkdir at depth %d: %v", len(rel)/251, err)
				}
				next, err := syscall.Openat(fd, comp, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
				syscall.Close(fd)
				if err != nil {
					t.Fatal(err)
				}
				fd, rel = next, rel+"/"+comp
			}
			last := strings.Repeat("f", 4094-len(rel))
			f, err := syscall.Openat(fd, last, syscall.O_CREAT|syscall.O_WRONLY, 0o644)
			if err != nil {
				t.Fatalf("create at a path of %d bytes: %v", len(rel)+1+len(last), err)
			}
			if _, err := syscall.Write(f, []byte("deep")); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Close(f); err != nil {
				t.Fatalf("close (commit) at a path of %d bytes: %v", len(rel)+1+len(last), err)
			}
			syscall.Close(fd)
			want = append(want, rel+"/"+last)
			ctx := context.Background()
			deadline := time.Now().Add(time.Minute)
			for _, p := range want {
				for {
					info, err := e.c.GetStatus(ctx, p)
					if err != nil {
						t.Fatalf("%d-byte path: %v", len(p), err)
					}
					if info.GetPersistenceState() == apiv1.PersistenceState_PERSISTED {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d-byte path not persisted: %v", len(p), info.GetPersistenceState())
					}
					time.Sleep(20 * time.Millisecond)
				}
				// In the UFS, at a host path longer than PATH_MAX for the
				// deep one: read it relative to the UFS root.
				root, err := os.OpenRoot(e.ufs)
				if err != nil {
					t.Fatal(err)
				}
				b, err := root.ReadFile(strings.TrimPrefix(p, "/"))
				root.Close()
				if err != nil || len(b) == 0 {
					t.Fatalf("%d-byte path in the UFS: %q %v", len(p), b, err)
				}
			}
		})
	}
}
