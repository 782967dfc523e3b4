package fuse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The POSIX comparison: every case runs the same operations, as root and
// as an unprivileged user (65534), on a tmpfs directory and on the Alcove
// mount, and the two transcripts must be equal (the conformance run of
// issue 16 found its defects this way). Operations run in a helper
// process with the user's credentials (the test binary again, see
// TestHelperPOSIX), so the kernel sees a real unprivileged caller; setup
// runs here, as root. A case records only what must match tmpfs: errnos,
// contents, modes, owners, link counts, whether inode numbers are equal
// and whether times moved — never raw inode numbers, times or st_blocks.

// posixCase is one comparison.
type posixCase struct {
	name string
	// setup prepares dir as root before run (uid: the user under test).
	setup func(t *testing.T, dir string, uid int)
	// run records operations made in dir as the user under test.
	run func(s *script)
	// alcove: steps whose Alcove result is a documented difference from
	// tmpfs (engine/fuse/README.md), step → expected Alcove line.
	alcove map[string]string
}

// posixUsers are the callers every case runs as.
var posixUsers = []int{0, 65534}

// otherUID owns files that belong to neither caller.
const otherUID = 1000

const (
	helperEnvCase = "ALCOVE_POSIX_CASE"
	helperEnvDir  = "ALCOVE_POSIX_DIR"
	helperEnvUID  = "ALCOVE_POSIX_UID"
	helperPrefix  = "POSIX "
)

// TestHelperPOSIX is the helper process: it drops to the user under test
// and runs one case's operations, printing its transcript.
func TestHelperPOSIX(t *testing.T) {
	name := os.Getenv(helperEnvCase)
	if name == "" {
		t.Skip("helper process of TestPOSIXCompare")
	}
	c := findCase(name)
	if c == nil {
		fmt.Println(helperPrefix + "ERROR unknown case " + name)
		os.Exit(2)
	}
	uid, _ := strconv.Atoi(os.Getenv(helperEnvUID))
	if uid != 0 {
		// Go applies these to every thread of the process.
		if err := syscall.Setgroups(nil); err != nil {
			fmt.Println(helperPrefix+"ERROR setgroups:", err)
			os.Exit(2)
		}
		if err := syscall.Setresgid(uid, uid, uid); err != nil {
			fmt.Println(helperPrefix+"ERROR setgid:", err)
			os.Exit(2)
		}
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			fmt.Println(helperPrefix+"ERROR setuid:", err)
			os.Exit(2)
		}
	}
	syscall.Umask(0o022)
	s := &script{dir: os.Getenv(helperEnvDir), uid: uid}
	if err := unix.Chdir(s.dir); err != nil {
		fmt.Println(helperPrefix+"ERROR chdir:", err)
		os.Exit(2)
	}
	c.run(s)
	for _, l := range s.out {
		fmt.Println(helperPrefix + l)
	}
	os.Exit(0)
}

func findCase(name string) *posixCase {
	for i := range posixCases {
		if posixCases[i].name == name {
			return &posixCases[i]
		}
	}
	return nil
}

// runHelper runs case c in dir as uid and returns its transcript.
func runHelper(t *testing.T, c *posixCase, dir string, uid int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPOSIX$", "-test.v=false", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnvCase+"="+c.name, helperEnvDir+"="+dir, helperEnvUID+"="+strconv.Itoa(uid))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s as %d in %s: %v\n%s\n%s", c.name, uid, dir, err, out, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), helperPrefix); ok {
			if strings.HasPrefix(l, "ERROR") {
				t.Fatalf("helper %s: %s", c.name, l)
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// posixDirs mounts a tmpfs and an Alcove mount side by side, both
// reachable by the unprivileged user.
func posixDirs(t *testing.T, o clusterOpts) (tmpfs string, e *env) {
	t.Helper()
	e = mountEnv(t, o, nil)
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmpfs = filepath.Join(e.dir, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", tmpfs, "tmpfs", 0, "mode=0755,size=4g"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(tmpfs, syscall.MNT_DETACH) })
	return tmpfs, e
}

// TestPOSIXCompare runs every case as root and as uid 65534 on tmpfs and
// on the mount and compares the transcripts.
func TestPOSIXCompare(t *testing.T) {
	tmpfs, e := posixDirs(t, clusterOpts{})
	for _, uid := range posixUsers {
		for i := range posixCases {
			c := &posixCases[i]
			t.Run(fmt.Sprintf("%s/uid%d", c.name, uid), func(t *testing.T) {
				comparePOSIX(t, c, uid, tmpfs, e.mnt)
			})
		}
	}
}

func comparePOSIX(t *testing.T, c *posixCase, uid int, refRoot, mntRoot string) {
	sub := fmt.Sprintf("%s-%d", c.name, uid)
	var got [2][]string
	for i, root := range []string{refRoot, mntRoot} {
		dir := filepath.Join(root, sub)
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if c.setup != nil {
			c.setup(t, dir, uid)
		}
		got[i] = runHelper(t, c, dir, uid)
	}
	ref, alc := got[0], got[1]
	if len(ref) == 0 {
		t.Fatal("the case recorded nothing")
	}
	for i := 0; i < max(len(ref), len(alc)); i++ {
		var r, a string
		if i < len(ref) {
			r = ref[i]
		}
		if i < len(alc) {
			a = alc[i]
		}
		step, _, _ := strings.Cut(r, ": ")
		if want, ok := c.alcove[step]; ok && a != r {
			if a != step+": "+want {
				t.Errorf("step %d: alcove %q, want the documented %q (tmpfs %q)", i, a, step+": "+want, r)
			}
			continue
		}
		if r != a {
			t.Errorf("step %d:\n  tmpfs  %s\n  alcove %s", i, r, a)
		}
	}
}

// script records the results of operations in dir.
type script struct {
	dir string
	uid int
	out []string
}

func (s *script) p(name string) string { return filepath.Join(s.dir, name) }

// rec records step's result.
func (s *script) rec(step string, format string, args ...any) {
	s.out = append(s.out, step+": "+fmt.Sprintf(format, args...))
}

// err records an operation's error (ok or the errno's name).
func (s *script) err(step string, err error) { s.rec(step, "%s", errName(err)) }

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return err.Error()
}

// stat records lstat of name: type and mode, owner, link count, size
// (files and symlinks; directory sizes differ between filesystems).
func (s *script) stat(step, name string) unix.Stat_t {
	var st unix.Stat_t
	if err := unix.Lstat(s.p(name), &st); err != nil {
		s.err(step, err)
		return st
	}
	s.rec(step, "%s", statLine(&st))
	return st
}

func (s *script) fstat(step string, fd int) unix.Stat_t {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		s.err(step, err)
		return st
	}
	s.rec(step, "%s", statLine(&st))
	return st
}

func statLine(st *unix.Stat_t) string {
	l := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Nlink)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		l += fmt.Sprintf(" size=%d", st.Size)
	}
	return l
}

// write creates or truncates name with data and mode; the error is
// recorded.
func (s *script) write(step, name, data string, mode uint32) {
	s.err(step, os.WriteFile(s.p(name), []byte(data), os.FileMode(mode)))
}

// read records name's content (at most 64 bytes).
func (s *script) read(step, name string) {
	b, err := os.ReadFile(s.p(name))
	if err != nil {
		s.err(step, err)
		return
	}
	s.rec(step, "%q", clip(b))
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// chownAs gives name to uid:gid (setup, as root).
func chownAs(t *testing.T, p string, uid, gid int, mode uint32) {
	t.Helper()
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// mkfile creates p as root with data, owned by uid:gid with mode (setup).
func mkfile(t *testing.T, p, data string, uid, gid int, mode uint32) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	chownAs(t, p, uid, gid, mode)
}

// mkdir creates p as root, owned by uid:gid with mode (setup).
func mkdir(t *testing.T, p string, uid, gid int, mode uint32) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	chownAs(t, p, uid, gid, mode)
}
