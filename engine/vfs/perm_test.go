package vfs

import (
	"os"
	"syscall"
	"testing"

	"github.com/alcove-io/alcove/test/prereq"
)

func TestPermits(t *testing.T) {
	none := func(uint32) bool { return false }
	member := func(g uint32) bool { return g == 50 }
	file := func(mode uint32) *Attr { return &Attr{Mode: syscall.S_IFREG | mode, Uid: 10, Gid: 20} }
	for _, tc := range []struct {
		name    string
		c       Caller
		a       *Attr
		mask    uint32
		inGroup func(uint32) bool
		want    bool
	}{
		{"owner r-- may read", Caller{Uid: 10}, file(0o477), mayRead, none, true},
		{"owner r-- may not write (the O_TRUNC defect)", Caller{Uid: 10}, file(0o477), mayWrite, none, false},
		{"owner bits win over others", Caller{Uid: 10}, file(0o077), mayRead, none, false},
		{"group member", Caller{Uid: 11, Gid: 20}, file(0o640), mayRead, none, true},
		{"group member may not write", Caller{Uid: 11, Gid: 20}, file(0o640), mayWrite, none, false},
		{"supplementary group", Caller{Uid: 11, Gid: 30}, &Attr{Mode: syscall.S_IFREG | 0o640, Uid: 10, Gid: 50}, mayRead, member, true},
		{"other", Caller{Uid: 11, Gid: 30}, file(0o640), mayRead, none, false},
		{"other readable", Caller{Uid: 11, Gid: 30}, file(0o644), mayRead, none, true},
		{"root reads anything", Caller{}, file(0), mayRead | mayWrite, none, true},
		{"root does not execute a file without x", Caller{}, file(0o644), mayExec, none, false},
		{"root executes a file with any x", Caller{}, file(0o001), mayExec, none, true},
		{"root searches any directory", Caller{}, &Attr{Mode: syscall.S_IFDIR}, mayExec, none, true},
		{"no search permission", Caller{Uid: 11, Gid: 30}, &Attr{Mode: syscall.S_IFDIR | 0o700, Uid: 10}, mayExec, none, false},
		{"empty mask", Caller{Uid: 11}, file(0), 0, none, true},
	} {
		if got := permits(tc.c, tc.a, tc.mask, tc.inGroup); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckSetattr(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	ms := int64(1000)
	a := &Attr{Mode: syscall.S_IFREG | 0o2755, Uid: 10, Gid: 20}
	for _, tc := range []struct {
		name     string
		c        Caller
		a        *Attr
		in       SetAttrIn
		want     syscall.Errno
		wantMode uint32 // when in.Mode is expected set
	}{
		{"owner chmod", Caller{Uid: 10, Gid: 20}, a, SetAttrIn{Mode: u32(0o600)}, 0, 0o600},
		{"non-owner chmod", Caller{Uid: 11, Gid: 20}, a, SetAttrIn{Mode: u32(0o600)}, syscall.EPERM, 0},
		{"root chmod", Caller{}, a, SetAttrIn{Mode: u32(0o2700)}, 0, 0o2700},
		{"non-member chmod g+s loses it", Caller{Uid: 10, Gid: 99}, a, SetAttrIn{Mode: u32(0o2755)}, 0, 0o755},
		{"member chmod g+s keeps it", Caller{Uid: 10, Gid: 20}, a, SetAttrIn{Mode: u32(0o2755)}, 0, 0o2755},
		{"owner gives the file away", Caller{Uid: 10, Gid: 20}, a, SetAttrIn{Uid: u32(11)}, syscall.EPERM, 0},
		{"owner chowns to itself", Caller{Uid: 10, Gid: 20}, a, SetAttrIn{Uid: u32(10)}, 0, 0o755},
		{"non-owner chowns to the owner", Caller{Uid: 11}, a, SetAttrIn{Uid: u32(10)}, syscall.EPERM, 0},
		{"root chown clears set-id bits", Caller{}, a, SetAttrIn{Uid: u32(11)}, 0, 0o755},
		{"owner chgrp to a group of its own", Caller{Uid: 10, Gid: 30}, a, SetAttrIn{Gid: u32(30)}, 0, 0o755},
		{"owner chgrp to a foreign group", Caller{Uid: 10, Gid: 30}, a, SetAttrIn{Gid: u32(40)}, syscall.EPERM, 0},
		{"non-owner utimes", Caller{Uid: 11}, &Attr{Mode: syscall.S_IFREG | 0o666, Uid: 10}, SetAttrIn{Mtime: &ms}, syscall.EPERM, 0},
		{"non-owner touch with write permission", Caller{Uid: 11}, &Attr{Mode: syscall.S_IFREG | 0o666, Uid: 10}, SetAttrIn{Mtime: &ms, TimesNow: true}, 0, 0},
		{"non-owner touch without", Caller{Uid: 11}, &Attr{Mode: syscall.S_IFREG | 0o644, Uid: 10}, SetAttrIn{Mtime: &ms, TimesNow: true}, syscall.EACCES, 0},
	} {
		out, e := checkSetattr(tc.c, tc.a, tc.in)
		if e != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, errName(e), errName(tc.want))
			continue
		}
		if e == 0 && tc.wantMode != 0 && (out.Mode == nil || *out.Mode != tc.wantMode) {
			got := "unset"
			if out.Mode != nil {
				got = "0" + strconvOct(*out.Mode)
			}
			t.Errorf("%s: mode %s, want 0%s", tc.name, got, strconvOct(tc.wantMode))
		}
	}
}

func strconvOct(m uint32) string {
	const digits = "01234567"
	if m == 0 {
		return "0"
	}
	var b []byte
	for ; m > 0; m /= 8 {
		b = append([]byte{digits[m%8]}, b...)
	}
	return string(b)
}

func TestNewOwnership(t *testing.T) {
	plain := &Attr{Mode: syscall.S_IFDIR | 0o777, Uid: 1, Gid: 2}
	sgid := &Attr{Mode: syscall.S_IFDIR | 0o2777, Uid: 1, Gid: 2}
	for _, tc := range []struct {
		name           string
		parent         *Attr
		mode           uint32
		dir            bool
		uid, gid, want uint32
	}{
		{"file: the caller's", plain, 0o644, false, 7, 8, 0o644},
		{"file in a setgid dir: the dir's group", sgid, 0o644, false, 7, 2, 0o644},
		{"dir in a setgid dir inherits setgid", sgid, 0o755, true, 7, 2, 0o2755},
		{"setgid exec by a non-member loses it", sgid, 0o2755, false, 7, 2, 0o755},
		{"mode 0 stays 0", plain, 0, false, 7, 8, 0},
	} {
		uid, gid, mode := newOwnership(Caller{Uid: 7, Gid: 8}, tc.parent, tc.mode, tc.dir)
		if uid != tc.uid || gid != tc.gid || mode != tc.want {
			t.Errorf("%s: %d:%d 0%s, want %d:%d 0%s", tc.name, uid, gid, strconvOct(mode), tc.uid, tc.gid, strconvOct(tc.want))
		}
	}
}

// TestPermissions: the defects of issue 16 at the VFS level, for root and
// for an unprivileged caller (the kernel checks the same with
// default_permissions; engine/fuse's TestPOSIXCompare runs them mounted).
func TestPermissions(t *testing.T) {
	prereq.Root(t) // the test user writes as root into root's directories
	f := newTFS(t, nil)
	ctx := f.ctx
	root := Caller{}
	nobody := Caller{Uid: 65534, Gid: 65534}
	var a Attr
	d, e := f.v.Mkdir(ctx, root, f.v.Root(), "pub", 0o777, &a)
	if e != 0 {
		t.Fatal(e)
	}
	as := func(c Caller) *tfs { g := *f; g.who = c; return &g }

	for _, tc := range []struct {
		who          Caller
		wantTrunc    syscall.Errno
		wantContent  string
		wantChmod    syscall.Errno
		wantSticky   syscall.Errno
		wantOwnerUID uint32
	}{
		{root, 0, "", 0, 0, 0},
		{nobody, syscall.EACCES, "data", syscall.EPERM, syscall.EPERM, 65534},
	} {
		g := as(tc.who)
		dir := "/pub/" + idString(tc.who.Uid)
		if _, e := f.v.Mkdir(ctx, tc.who, d, idString(tc.who.Uid), 0o777, &a); e != 0 {
			t.Fatal(e)
		}
		// New files belong to the caller; the requested mode is kept.
		g.mustWrite(dir+"/f", []byte("data"), 0o644)
		if st, _ := g.stat(dir + "/f"); st.Uid != tc.wantOwnerUID || st.Gid != tc.who.Gid {
			t.Errorf("uid %d: new file owned by %d:%d", tc.who.Uid, st.Uid, st.Gid)
		}
		fl, e := g.open(dir+"/m0", os.O_CREATE|os.O_WRONLY, 0)
		if e != 0 {
			t.Fatalf("uid %d: create mode 0: %v", tc.who.Uid, e)
		}
		fl.close()
		if st, _ := g.stat(dir + "/m0"); st.Mode != syscall.S_IFREG {
			t.Errorf("uid %d: open(O_CREAT, 0) made mode %o", tc.who.Uid, st.Mode)
		}
		// The open that destroyed data.
		n, _ := g.walk(dir + "/f")
		mode := uint32(0o477)
		if e := f.v.Setattr(ctx, tc.who, n, SetAttrIn{Mode: &mode}, &a); e != 0 {
			t.Fatal(e)
		}
		h, _, e := f.v.Open(ctx, tc.who, n, syscall.O_RDONLY|syscall.O_TRUNC)
		checkErrno(t, "open O_RDONLY|O_TRUNC of a 0477 file by its owner", e, tc.wantTrunc)
		if e == 0 {
			h.Release(ctx) // root may: the release commits the truncation
		}
		if got := string(f.mustRead(dir + "/f")); got != tc.wantContent {
			t.Errorf("uid %d: content %q after O_RDONLY|O_TRUNC, want %q", tc.who.Uid, got, tc.wantContent)
		}
		// chmod of a file of someone else's.
		f.mustWrite(dir+"/theirs", []byte("t"), 0o644)
		tn, _ := f.walk(dir + "/theirs")
		other := uint32(1000)
		if e := f.v.Setattr(ctx, root, tn, SetAttrIn{Uid: &other, Gid: &other}, &a); e != 0 {
			t.Fatal(e)
		}
		mode = 0o600
		checkErrno(t, "chmod by a non-owner", f.v.Setattr(ctx, tc.who, tn, SetAttrIn{Mode: &mode}, &a), tc.wantChmod)
		// A sticky directory.
		sd, e := f.v.Mkdir(ctx, root, f.v.Root(), "sticky"+idString(tc.who.Uid), 0o1777, &a)
		if e != 0 {
			t.Fatal(e)
		}
		f.mustWrite("/sticky"+idString(tc.who.Uid)+"/theirs", []byte("t"), 0o666)
		sn, _ := f.walk("/sticky" + idString(tc.who.Uid) + "/theirs")
		if e := f.v.Setattr(ctx, root, sn, SetAttrIn{Uid: &other}, &a); e != 0 {
			t.Fatal(e)
		}
		checkErrno(t, "unlink another's file in a sticky directory", f.v.Unlink(ctx, tc.who, sd, "theirs"), tc.wantSticky)
	}
	// Search permission: a directory without x for the caller.
	locked, _ := f.v.Mkdir(ctx, root, f.v.Root(), "locked", 0o700, &a)
	f.mustWrite("/locked/f", []byte("f"), 0o644)
	_, e = f.v.Lookup(ctx, nobody, locked, "f", &a)
	checkErrno(t, "lookup in a directory without search permission", e, syscall.EACCES)
	_, e = f.v.Readdir(ctx, nobody, locked)
	checkErrno(t, "readdir without read permission", e, syscall.EACCES)
}
