package fuse

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tick lets a clock of millisecond resolution move between two
// operations whose times are compared (Alcove keeps times in ms).
const tick = 20 * time.Millisecond

// posixCases are the defects of issue 16 and the behaviours next to them;
// see posixcmp_test.go for how they run.
var posixCases = []posixCase{
	{
		// The open that destroyed data: O_RDONLY|O_TRUNC needs write
		// permission, also for the owner.
		name: "otrunc-0477",
		run: func(s *script) {
			s.write("create", "f", "data", 0o644)
			s.err("chmod 0477", unix.Chmod(s.p("f"), 0o477))
			fd, err := unix.Open(s.p("f"), unix.O_RDONLY|unix.O_TRUNC, 0)
			s.err("open O_RDONLY|O_TRUNC", err)
			if err == nil {
				unix.Close(fd)
			}
			s.read("content after", "f")
			s.stat("stat", "f")
		},
	},
	{
		name: "open-modes",
		setup: func(t *testing.T, dir string, uid int) {
			mkfile(t, dir+"/ro", "ro", otherUID, otherUID, 0o444)
			mkfile(t, dir+"/secret", "secret", otherUID, otherUID, 0o600)
			mkfile(t, dir+"/shared", "shared", otherUID, otherUID, 0o666)
		},
		run: func(s *script) {
			_, err := os.OpenFile(s.p("ro"), os.O_WRONLY, 0)
			s.err("open ro for write", err)
			_, err = os.Open(s.p("secret"))
			s.err("open secret for read", err)
			s.err("access ro W_OK", unix.Access(s.p("ro"), unix.W_OK))
			s.err("access secret R_OK", unix.Access(s.p("secret"), unix.R_OK))
			s.write("rewrite shared", "shared", "mine", 0)
			s.read("shared", "shared")
			s.read("ro", "ro")
		},
	},
	{
		name: "chmod-chown",
		setup: func(t *testing.T, dir string, uid int) {
			mkfile(t, dir+"/theirs", "t", otherUID, otherUID, 0o644)
		},
		run: func(s *script) {
			s.err("chmod theirs", unix.Chmod(s.p("theirs"), 0o600))
			s.err("chown theirs to me", unix.Chown(s.p("theirs"), s.uid, s.uid))
			s.write("create mine", "mine", "m", 0o644)
			s.err("chown mine away", unix.Chown(s.p("mine"), otherUID, -1))
			s.err("chgrp mine to root", unix.Chown(s.p("mine"), -1, 0))
			s.err("chown mine to myself", unix.Chown(s.p("mine"), s.uid, -1))
			s.stat("stat mine", "mine")
			s.stat("stat theirs", "theirs")
		},
	},
	{
		name: "sticky",
		setup: func(t *testing.T, dir string, uid int) {
			mkdir(t, dir+"/tmp", 0, 0, 0o1777)
			mkfile(t, dir+"/tmp/theirs", "t", otherUID, otherUID, 0o666)
			mkfile(t, dir+"/tmp/other2", "t", otherUID, otherUID, 0o666)
			mkdir(t, dir+"/tmp/theirdir", otherUID, otherUID, 0o777)
		},
		run: func(s *script) {
			s.err("unlink theirs", unix.Unlink(s.p("tmp/theirs")))
			s.err("rename theirs", unix.Rename(s.p("tmp/other2"), s.p("tmp/moved")))
			s.err("rmdir theirdir", unix.Rmdir(s.p("tmp/theirdir")))
			s.write("create mine", "tmp/mine", "m", 0o644)
			s.err("rename mine over theirs", unix.Rename(s.p("tmp/mine"), s.p("tmp/other2")))
			s.write("create mine2", "tmp/mine2", "m", 0o644)
			s.err("unlink mine2", unix.Unlink(s.p("tmp/mine2")))
			s.names("listing", "tmp")
		},
	},
	{
		name: "search",
		setup: func(t *testing.T, dir string, uid int) {
			mkdir(t, dir+"/locked", otherUID, otherUID, 0o700)
			mkfile(t, dir+"/locked/f", "f", otherUID, otherUID, 0o644)
			mkdir(t, dir+"/listonly", otherUID, otherUID, 0o744)
			mkfile(t, dir+"/listonly/f", "f", otherUID, otherUID, 0o644)
		},
		run: func(s *script) {
			s.stat("stat locked", "locked")
			s.stat("stat through locked", "locked/f")
			s.read("read through locked", "locked/f")
			s.names("list locked", "locked")
			s.stat("stat through listonly", "listonly/f")
			s.names("list listonly", "listonly")
			s.err("create in locked", os.WriteFile(s.p("locked/g"), nil, 0o644))
		},
	},
	{
		name: "ownership",
		setup: func(t *testing.T, dir string, uid int) {
			mkdir(t, dir+"/sg", otherUID, otherUID, 0o2777)
		},
		run: func(s *script) {
			s.write("create", "f", "f", 0o644)
			s.stat("stat file", "f")
			s.err("mkdir", unix.Mkdir(s.p("d"), 0o777))
			s.stat("stat dir", "d")
			s.write("create in setgid dir", "sg/f", "f", 0o755)
			s.stat("stat file in setgid dir", "sg/f")
			s.write("create setgid exec in setgid dir", "sg/x", "x", 0o755)
			s.err("chmod it g+s", unix.Chmod(s.p("sg/x"), 0o2755))
			s.stat("stat it", "sg/x")
			s.err("mkdir in setgid dir", unix.Mkdir(s.p("sg/d"), 0o777))
			s.stat("stat dir in setgid dir", "sg/d")
		},
	},
	{
		name: "create-mode",
		run: func(s *script) {
			fd, err := unix.Open(s.p("f0"), unix.O_CREAT|unix.O_WRONLY, 0)
			s.err("open O_CREAT 0000", err)
			if err == nil {
				_, err = unix.Write(fd, []byte("x"))
				s.err("write the new fd", err)
				s.err("close", unix.Close(fd))
			}
			s.stat("stat f0", "f0")
			s.read("read f0", "f0")
			fd, err = unix.Open(s.p("f7"), unix.O_CREAT|unix.O_WRONLY, 0o777)
			s.err("open O_CREAT 0777 (umask 022)", err)
			if err == nil {
				unix.Close(fd)
			}
			s.stat("stat f7", "f7")
			s.err("mkdir 0000", unix.Mkdir(s.p("d0"), 0))
			s.stat("stat d0", "d0")
			s.err("mkdir 0777", unix.Mkdir(s.p("d7"), 0o777))
			s.stat("stat d7", "d7")
			s.err("create in d0", os.WriteFile(s.p("d0/x"), nil, 0o644))
		},
	},
	{
		name: "setgid-chmod",
		setup: func(t *testing.T, dir string, uid int) {
			mkfile(t, dir+"/g", "g", uid, otherUID, 0o755)
			mkdir(t, dir+"/dg", uid, otherUID, 0o755)
		},
		run: func(s *script) {
			s.err("chmod file g+s", unix.Chmod(s.p("g"), 0o2755))
			s.stat("stat file", "g")
			s.err("chmod dir g+s", unix.Chmod(s.p("dg"), 0o2755))
			s.stat("stat dir", "dg")
			s.err("chmod file u+s", unix.Chmod(s.p("g"), 0o4755))
			s.stat("stat file u+s", "g")
		},
	},
	{
		name: "times",
		run: func(s *script) {
			s.write("create", "f", "a", 0o644)
			st := s.statQuiet("f")
			time.Sleep(tick)
			s.err("chmod", unix.Chmod(s.p("f"), 0o600))
			st2 := s.statQuiet("f")
			s.rec("chmod moves ctime", "%v", after(st2.Ctim, st.Ctim))
			s.rec("chmod keeps mtime", "%v", st2.Mtim == st.Mtim)
			time.Sleep(tick)
			s.err("chown to myself", unix.Chown(s.p("f"), s.uid, -1))
			st3 := s.statQuiet("f")
			s.rec("chown moves ctime", "%v", after(st3.Ctim, st2.Ctim))
			time.Sleep(tick)
			s.err("rename", unix.Rename(s.p("f"), s.p("g")))
			st4 := s.statQuiet("g")
			s.rec("rename moves ctime", "%v", after(st4.Ctim, st3.Ctim))
			time.Sleep(tick)
			ts := []unix.Timespec{{Sec: 1_000_000_000}, {Sec: 1_200_000_000}}
			s.err("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, s.p("g"), ts, 0))
			st5 := s.statQuiet("g")
			s.rec("atime set", "%d", st5.Atim.Sec)
			s.rec("mtime set", "%d", st5.Mtim.Sec)
			s.rec("utimensat moves ctime", "%v", after(st5.Ctim, st4.Ctim))
			s.read("read (relatime: atime <= mtime)", "g")
			st6 := s.statQuiet("g")
			s.rec("read moved atime", "%v", after(st6.Atim, st5.Atim))
			s.read("read again", "g")
			st7 := s.statQuiet("g")
			s.rec("second read kept atime", "%v", st7.Atim == st6.Atim)
			time.Sleep(tick)
			s.write("rewrite", "g", "bb", 0)
			st8 := s.statQuiet("g")
			s.rec("write moves mtime", "%v", after(st8.Mtim, st7.Mtim))
			s.rec("write moves ctime", "%v", after(st8.Ctim, st7.Ctim))
			d := s.statQuiet(".")
			time.Sleep(tick)
			s.write("create in dir", "h", "h", 0o644)
			d2 := s.statQuiet(".")
			s.rec("create moves dir mtime", "%v", after(d2.Mtim, d.Mtim))
			s.rec("create moves dir ctime", "%v", after(d2.Ctim, d.Ctim))
		},
	},
	{
		name: "unlink-open",
		run: func(s *script) {
			s.write("create", "f", "hello", 0o644)
			fd, err := unix.Open(s.p("f"), unix.O_RDWR, 0)
			s.err("open", err)
			if err != nil {
				return
			}
			defer unix.Close(fd)
			s.err("unlink", unix.Unlink(s.p("f")))
			s.fstat("fstat", fd)
			s.pread("pread", fd, 5, 0)
			_, err = unix.Pwrite(fd, []byte("HE"), 0)
			s.err("pwrite", err)
			s.pread("pread after write", fd, 5, 0)
			_, err = unix.Pwrite(fd, []byte("!!"), 5)
			s.err("pwrite past the end", err)
			s.fstat("fstat after writes", fd)
			s.stat("stat the name", "f")
			s.names("listing", ".")
			s.err("fsync", unix.Fsync(fd))
			s.err("close", unix.Close(fd))
			s.stat("stat after close", "f")
			s.names("listing after close", ".")
		},
	},
	{
		name: "rename-over-open",
		run: func(s *script) {
			s.write("create a", "a", "AAAA", 0o644)
			s.write("create b", "b", "BB", 0o644)
			fd, err := unix.Open(s.p("b"), unix.O_RDONLY, 0)
			s.err("open b", err)
			if err != nil {
				return
			}
			s.err("rename a over b", unix.Rename(s.p("a"), s.p("b")))
			s.pread("read the open b", fd, 8, 0)
			s.fstat("fstat the open b", fd)
			s.read("read b by name", "b")
			s.err("close", unix.Close(fd))
			s.names("listing", ".")
		},
	},
	{
		name: "inode-numbers",
		run: func(s *script) {
			s.write("create a", "a", "1", 0o644)
			a1 := s.statQuiet("a")
			s.write("rewrite a", "a", "22", 0)
			a2 := s.statQuiet("a")
			s.rec("rewrite keeps the inode", "%v", a1.Ino == a2.Ino)
			s.err("rename a c", unix.Rename(s.p("a"), s.p("c")))
			c := s.statQuiet("c")
			s.rec("rename keeps the inode", "%v", c.Ino == a1.Ino)
			s.write("create b", "b", "3", 0o644)
			b := s.statQuiet("b")
			s.err("rename b over c", unix.Rename(s.p("b"), s.p("c")))
			c2 := s.statQuiet("c")
			s.rec("c is b now", "%v", c2.Ino == b.Ino)
			s.rec("c is not a", "%v", c2.Ino != a1.Ino)
			// Rewrites and renames among several files: no file ever
			// reports another file's number.
			names := []string{"f0", "f1", "f2", "f3", "f4"}
			for _, n := range names {
				s.write("create "+n, n, n, 0o644)
			}
			for round := 0; round < 3; round++ {
				for _, n := range names {
					s.write("rewrite "+n, n, n+n, 0)
				}
				s.err("rename f0 f1", unix.Rename(s.p(names[0]), s.p(names[1])))
				s.write("recreate f0", names[0], "new", 0o644)
			}
			seen := map[uint64]string{}
			distinct := true
			for _, n := range names {
				st := s.statQuiet(n)
				if o, ok := seen[st.Ino]; ok && o != n {
					distinct = false
				}
				seen[st.Ino] = n
			}
			s.rec("distinct inode numbers", "%v", distinct)
		},
	},
	{
		name: "dir-nlink",
		run: func(s *script) {
			s.err("mkdir d", unix.Mkdir(s.p("d"), 0o755))
			s.stat("empty", "d")
			s.err("mkdir d/x", unix.Mkdir(s.p("d/x"), 0o755))
			s.err("mkdir d/y", unix.Mkdir(s.p("d/y"), 0o755))
			s.write("file d/f", "d/f", "f", 0o644)
			s.stat("two subdirectories", "d")
			s.err("rmdir d/x", unix.Rmdir(s.p("d/x")))
			s.stat("one subdirectory", "d")
			s.err("mkdir e", unix.Mkdir(s.p("e"), 0o755))
			s.err("rename d/y e/y", unix.Rename(s.p("d/y"), s.p("e/y")))
			s.stat("d after the move", "d")
			s.stat("e after the move", "e")
			s.stat("the parent", ".")
		},
	},
	{
		// Issue 17: a directory removed while something still holds it
		// (a bind mount, a cwd, an open fd) answers from the node.
		name: "removed-dir",
		run: func(s *script) {
			s.err("mkdir d", unix.Mkdir(s.p("d"), 0o755))
			fd, err := unix.Open(s.p("d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			s.err("open d", err)
			if err != nil {
				return
			}
			s.err("rmdir d", unix.Rmdir(s.p("d")))
			s.fstat("fstat the removed d", fd)
			s.stat("stat by name", "d")
			s.err("close", unix.Close(fd))
		},
	},
	{
		name: "long-names",
		run: func(s *script) {
			for _, l := range []int{200, 235, 240, 250, 254, 255} {
				n := strings.Repeat("n", l-3) + itoa3(l)
				s.write("create "+itoa3(l), n, "x", 0o644)
				s.read("read "+itoa3(l), n)
			}
			n255 := strings.Repeat("a", 255)
			s.write("create a255", n255, "y", 0o644)
			s.err("rename to b255", unix.Rename(s.p(n255), s.p(strings.Repeat("b", 255))))
			s.stat("stat b255", strings.Repeat("b", 255))
			s.err("mkdir d255", unix.Mkdir(s.p(strings.Repeat("d", 255)), 0o755))
			s.write("create inside d255", strings.Repeat("d", 255)+"/"+n255, "z", 0o644)
			s.read("read inside d255", strings.Repeat("d", 255)+"/"+n255)
			s.write("create 256", strings.Repeat("c", 256), "x", 0o644)
		},
	},
	{
		name: "path-max",
		run: func(s *script) {
			// 16 levels of 250-byte names: a path of about 4 KiB below
			// the case's directory, reached by chdir (PATH_MAX bounds
			// one system call's path, not a file's depth).
			comp := strings.Repeat("p", 250)
			depth := 0
			for i := 0; i < 16; i++ {
				if err := unix.Mkdir(comp, 0o755); err != nil {
					s.err("mkdir level", err)
					break
				}
				if err := unix.Chdir(comp); err != nil {
					s.err("chdir level", err)
					break
				}
				depth++
			}
			s.rec("levels", "%d", depth)
			name := strings.Repeat("f", 4095-16*251-1)
			s.rec("path length below the case", "%d", 16*251+len(name))
			s.err("create", os.WriteFile(name, []byte("deep"), 0o644))
			b, err := os.ReadFile(name)
			s.err("read", err)
			s.rec("content", "%q", b)
			s.err("rename", unix.Rename(name, "g"))
			s.err("unlink", unix.Unlink("g"))
			unix.Chdir(s.dir)
		},
	},
	{
		// One byte at 2 GiB + 1 of a new file: holes take no cache
		// space (the test cluster's cache is 256 MiB).
		name: "sparse",
		run: func(s *script) {
			const off = 2<<30 + 1
			fd, err := unix.Open(s.p("f"), unix.O_CREAT|unix.O_RDWR, 0o644)
			s.err("create", err)
			if err != nil {
				return
			}
			_, err = unix.Pwrite(fd, []byte("Z"), off)
			s.err("pwrite at 2 GiB + 1", err)
			s.err("close", unix.Close(fd))
			s.stat("stat", "f")
			fd, err = unix.Open(s.p("f"), unix.O_RDONLY, 0)
			s.err("open", err)
			if err != nil {
				return
			}
			s.pread("the byte", fd, 1, off)
			s.pread("past the end", fd, 4, off+1)
			buf := make([]byte, 1<<20)
			n, err := unix.Pread(fd, buf, 1<<30)
			s.err("read 1 MiB of the hole", err)
			s.rec("hole is zeros", "%v", n == len(buf) && bytes.Count(buf, []byte{0}) == n)
			s.err("close again", unix.Close(fd))
			s.err("truncate up (a hole at the end)", unix.Truncate(s.p("f"), 3<<30))
			s.stat("stat after truncate", "f")
			s.err("unlink", unix.Unlink(s.p("f")))
		},
	},
	{
		name: "symlinks",
		run: func(s *script) {
			s.err("symlink dangling", unix.Symlink("dangling", s.p("l1")))
			s.readlink("readlink", "l1")
			s.stat("lstat", "l1")
			var st unix.Stat_t
			s.err("stat through dangling", unix.Stat(s.p("l1"), &st))
			s.write("create target", "t", "x", 0o644)
			s.err("symlink to t", unix.Symlink("t", s.p("l2")))
			s.read("read through l2", "l2")
			_, err := unix.Open(s.p("l2"), unix.O_RDONLY|unix.O_NOFOLLOW, 0)
			s.err("open O_NOFOLLOW", err)
			s.err("mkdir dd", unix.Mkdir(s.p("dd"), 0o755))
			s.err("symlink up", unix.Symlink("../t", s.p("dd/up")))
			s.read("read through dd/up", "dd/up")
			s.err("symlink to dir", unix.Symlink("dd", s.p("ld")))
			s.read("read through a dir link", "ld/up")
			s.err("symlink exists", unix.Symlink("x", s.p("l2")))
			s.err("rename l2 l3", unix.Rename(s.p("l2"), s.p("l3")))
			s.readlink("readlink l3", "l3")
			long := strings.Repeat("t/", 2000)
			s.err("symlink long target", unix.Symlink(long, s.p("llong")))
			s.readlink("readlink long", "llong")
			s.err("lchown", unix.Lchown(s.p("l3"), s.uid, -1))
			s.names("listing", ".")
			s.err("unlink l3", unix.Unlink(s.p("l3")))
			s.read("target stays", "t")
		},
	},
	{
		name: "hardlink",
		run: func(s *script) {
			s.write("create", "a", "a", 0o644)
			s.err("link", unix.Link(s.p("a"), s.p("b")))
		},
		alcove: map[string]string{"link": "EPERM"},
	},
	{
		name: "fifo",
		run: func(s *script) {
			s.err("mkfifo", unix.Mkfifo(s.p("p"), 0o644))
			s.err("mknod char", unix.Mknod(s.p("c"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		},
		alcove: map[string]string{"mkfifo": "ENOSYS", "mknod char": "ENOSYS"},
	},
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

func after(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || (a.Sec == b.Sec && a.Nsec > b.Nsec)
}

// statQuiet is lstat of name without recording (for comparisons).
func (s *script) statQuiet(name string) unix.Stat_t {
	var st unix.Stat_t
	if err := unix.Lstat(s.p(name), &st); err != nil {
		s.err("lstat "+name, err)
	}
	return st
}

func (s *script) pread(step string, fd, n int, off int64) {
	b := make([]byte, n)
	got, err := unix.Pread(fd, b, off)
	if err != nil {
		s.err(step, err)
		return
	}
	s.rec(step, "%q", b[:got])
}

func (s *script) readlink(step, name string) {
	b := make([]byte, 8192)
	n, err := unix.Readlink(s.p(name), b)
	if err != nil {
		s.err(step, err)
		return
	}
	s.rec(step, "%d bytes %q", n, clip(b[:n]))
}

// names records the entries of directory name with their types.
func (s *script) names(step, name string) {
	ents, err := os.ReadDir(s.p(name))
	if err != nil {
		s.err(step, err)
		return
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if len(n) > 20 {
			n = n[:20] + "…"
		}
		out = append(out, n+"("+e.Type().String()+")")
	}
	sort.Strings(out)
	s.rec(step, "%s", strings.Join(out, " "))
}
