package fuse

import (
	"os"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

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
