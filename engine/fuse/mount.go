package fuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/vfs"
)

// Mount mounts cfg.Root of Alcove at cfg.MountPoint and serves it until
// Unmount (or a handover). A broken mount left at the mount point by a
// dead daemon (ENOTCONN) is detached first.
func Mount(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	mnt, err := filepath.Abs(cfg.MountPoint)
	if err != nil {
		return nil, err
	}
	cfg.MountPoint = mnt
	logger := klog.FromContext(ctx).WithValues("mountPoint", mnt, "root", cfg.Root)
	ctx = klog.NewContext(ctx, logger)
	switch state, err := CheckMount(mnt); {
	case err != nil:
		return nil, err
	case state == MountBroken:
		logger.Info("Mount point holds a broken FUSE mount (its daemon died); detaching it")
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("detach broken mount %s: %w", mnt, err)
		}
	case state == MountHealthy:
		return nil, fmt.Errorf("mount %s: %w: a live filesystem is already mounted there", mnt, syscall.EBUSY)
	}
	octx, cancel := context.WithTimeout(ctx, rootStatTimeout)
	defer cancel()
	info, err := cfg.Client.GetStatus(octx, cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", cfg.Root, err)
	}
	if !info.GetFolder() {
		return nil, fmt.Errorf("mount %s: %w", cfg.Root, meta.ErrNotDirectory)
	}
	s, raw, opts, err := newServer(ctx, cfg, info.GetFileId())
	if err != nil {
		return nil, err
	}
	// A fresh mount has no open files: files a crashed predecessor kept
	// open after unlinking them go now (a handover keeps them).
	if err := s.vfs.PurgeOrphans(ctx); err != nil {
		logger.Error(err, "Cannot release files a previous mount left unlinked but open; the next mount tries again")
	}

	fd, err := mountDirect(mnt, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	mo := opts.MountOptions
	mo.DirectMount, mo.DirectMountStrict = false, false
	srv, err := gofuse.NewServer(raw, fmt.Sprintf("/dev/fd/%d", fd), &mo)
	if err != nil {
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		return nil, fmt.Errorf("serve %s: %w", mnt, err)
	}
	s.start(srv, fd)
	if err := s.waitReady(); err != nil {
		s.Unmount()
		return nil, err
	}
	logger.Info("Mounted Alcove")
	return s, nil
}

// newServer builds the VFS, node tree and raw layer shared by Mount and
// Takeover; rootID is the Alcove file id of cfg.Root.
func newServer(ctx context.Context, cfg Config, rootID int64) (*Server, *rawFS, *fs.Options, error) {
	logger := klog.FromContext(ctx)
	nodeName := cfg.Client.Config().Node
	v, err := vfs.New(ctx, vfs.Config{Root: cfg.Root, WriteType: cfg.WriteType, StageDir: cfg.StageDir,
		Node: nodeName, DisablePassthrough: cfg.DisablePassthrough, NoAtime: cfg.NoAtime,
		// The same across restarts and handovers of this mount.
		Session: "fuse:" + nodeName + ":" + cfg.MountPoint}, cfg.Client, rootID)
	if err != nil {
		return nil, nil, nil, err
	}
	m := &mount{rebuilt: map[uint64]*fs.Inode{}}
	root := &node{m: m, v: v, vn: v.Root()}
	opts := mountOptions(&cfg)
	bridge := fs.NewNodeFS(root, opts)
	raw := newRawFS(bridge, v.Metrics(), func(ino uint64) func() {
		if vn := v.Node(ino); vn != nil {
			return vn.BeginRelease()
		}
		return func() {}
	})
	s := &Server{cfg: cfg, vfs: v, root: root, raw: raw, mnt: cfg.MountPoint, logger: logger, done: make(chan struct{})}
	return s, raw, opts, nil
}

// start serves srv, whose /dev/fuse fd is fd.
func (s *Server) start(srv *gofuse.Server, fd int) {
	s.srv = srv
	s.fd = fd
	go func() {
		srv.Serve()
		s.finish(nil)
	}()
	if s.cfg.HandoverSocket != "" {
		h, err := s.listenHandover(s.cfg.HandoverSocket)
		if err != nil {
			s.logger.Error(err, "Cannot offer handover", "socket", s.cfg.HandoverSocket)
		} else {
			s.handover = h
		}
	}
}

// waitReady waits until the mount answers and raises its readahead.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		var st unix.Stat_t
		err := unix.Stat(s.mnt, &st)
		if err == nil {
			pollHack(s.mnt)
			if kb := s.cfg.ReadAheadKB; kb > 0 {
				p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
				if werr := os.WriteFile(p, []byte(fmt.Sprint(kb)), 0); werr != nil {
					s.logger.V(2).Info("Cannot raise readahead", "path", p, "err", werr)
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount %s does not answer: %w", s.mnt, err)
		}
		time.Sleep(readyPoll)
	}
}

// pollHack makes the kernel send one POLL, which go-fuse answers ENOSYS,
// so the kernel never polls this connection again. Without it a process
// that serves the mount and also opens files on it can deadlock: Go
// registers every opened file with epoll, which sends POLL to the daemon
// while holding the runtime's poller (go-fuse's WaitMount does this, but
// not for the /dev/fd/N mounts used here).
func pollHack(mnt string) {
	fd, err := unix.Open(filepath.Join(mnt, ".go-fuse-epoll-hack"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	unix.Close(fd)
}

// mountDirect opens /dev/fuse and mounts it at mnt (root, no fusermount),
// returning the fd: unlike go-fuse's own direct mount, the daemon keeps the
// fd number so it can hand the connection over.
func mountDirect(mnt string, o *gofuse.MountOptions) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		return -1, err
	}
	fd, err := syscall.Open("/dev/fuse", os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	opts := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&syscall.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", o.MaxWrite),
	}
	if o.AllowOther {
		opts = append(opts, "allow_other")
	}
	// The kernel checks modes and owners itself (the VFS checks again and
	// owns what the kernel cannot know): without it allow_other lets any
	// user open any file whatever its mode.
	opts = append(opts, "default_permissions")
	if err := syscall.Mount(o.FsName, mnt, "fuse."+o.Name, syscall.MS_NOSUID|syscall.MS_NODEV, strings.Join(opts, ",")); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("mount(2) fuse at %s: %w", mnt, err)
	}
	return fd, nil
}

// MountState is what CheckMount finds at a path.
type MountState int

const (
	// NotMounted: no FUSE mount at the path.
	NotMounted MountState = iota
	// MountHealthy: a FUSE mount whose daemon answers.
	MountHealthy
	// MountBroken: a FUSE mount whose daemon is gone (stat fails with
	// ENOTCONN); it must be unmounted before mounting again.
	MountBroken
)

func (s MountState) String() string {
	return [...]string{"not mounted", "healthy", "broken"}[s]
}

// CheckMount reports whether mnt is a FUSE mount point per
// /proc/self/mountinfo and, if so, whether its daemon still answers
// (statfs; ENOTCONN/ECONNABORTED mean its daemon is gone).
func CheckMount(mnt string) (MountState, error) {
	mnt = filepath.Clean(mnt)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return NotMounted, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMountPath(fields[4]) != mnt {
			continue
		}
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				found = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return NotMounted, fmt.Errorf("read mount table: %w", err)
	}
	if !found {
		return NotMounted, nil
	}
	if err := probe(mnt); errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		return MountBroken, nil
	} else if err != nil {
		return MountHealthy, nil // answers, with an error of its own
	}
	return MountHealthy, nil
}

// probe asks the daemon for statfs (never answered from the kernel's
// attribute cache, unlike stat), bounded in time: a hung daemon counts as
// broken too.
func probe(mnt string) error {
	ch := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		ch <- unix.Statfs(mnt, &st)
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(probeTimeout):
		return syscall.ENOTCONN
	}
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
