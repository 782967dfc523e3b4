// Package fuse mounts Alcove's POSIX view: a thin adapter of go-fuse's
// node API onto engine/vfs (which owns handles, stages, commits and the
// passthrough decisions), kernel passthrough for files cached on the local
// worker, and a live handover of the /dev/fuse connection to a successor
// daemon. See README.md for exactly what is and is not supported.
package fuse

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/vfs"
)

// Config configures a mount.
type Config struct {
	// MountPoint is the local directory to mount on.
	MountPoint string
	// Root is the Alcove path shown at the mount point (default "/").
	Root string
	// Client talks to the master and workers; the caller owns it.
	Client *client.Client
	// WriteType is used when staged files are committed (default: the
	// client's write type).
	WriteType apiv1.WriteType
	// StageDir holds staging files of files being written (default
	// /dev/shm/alcove-fuse-stage when /dev/shm is a tmpfs with room, like
	// the worker's MEM tier; else $TMPDIR/alcove-fuse-stage). It must be on
	// a local filesystem; a successor daemon reuses the staging files of
	// open files.
	StageDir string
	// AttrTimeout and EntryTimeout are the kernel's caching times for
	// attributes and names (default 1 s).
	AttrTimeout, EntryTimeout time.Duration
	// DisablePassthrough serves every read through the daemon.
	DisablePassthrough bool
	// NoAtime: reads never update atime (default: relatime).
	NoAtime bool
	// ReadAheadKB is set on the mount's BDI (default 4096; 0 keeps it).
	ReadAheadKB int
	// HandoverSocket, when set, is a unix socket on which this daemon
	// hands its live /dev/fuse connection to a successor (`alcove fuse
	// --takeover SOCKET`).
	HandoverSocket string
	// Debug logs every FUSE request.
	Debug bool
}

// stageShmMin is the free space /dev/shm needs to hold the stages: a
// container's default /dev/shm (64 MiB) does not qualify.
const stageShmMin = 4 << 30

// defaultStageDir puts the stages in memory, beside the cache, when the
// machine's /dev/shm is a tmpfs with room: staging on a disk filesystem
// writes every byte back to that disk while it is also written to the
// worker (and, through the cache, to the UFS).
func defaultStageDir() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC && st.Bavail*uint64(st.Bsize) >= stageShmMin {
		return "/dev/shm/alcove-fuse-stage"
	}
	return os.TempDir() + "/alcove-fuse-stage"
}

func (c *Config) setDefaults() error {
	if c.MountPoint == "" {
		return fmt.Errorf("%w: fuse needs a mount point", meta.ErrInvalidArgument)
	}
	if c.Client == nil {
		return fmt.Errorf("%w: fuse needs a client", meta.ErrInvalidArgument)
	}
	if c.Root == "" {
		c.Root = "/"
	}
	root, err := meta.CleanPath(c.Root)
	if err != nil {
		return err
	}
	c.Root = root
	if c.WriteType == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		c.WriteType = c.Client.Config().WriteType
	}
	if c.StageDir == "" {
		c.StageDir = defaultStageDir()
	}
	if c.AttrTimeout == 0 {
		c.AttrTimeout = time.Second
	}
	if c.EntryTimeout == 0 {
		c.EntryTimeout = time.Second
	}
	if c.ReadAheadKB == 0 {
		c.ReadAheadKB = 4096
	}
	return os.MkdirAll(c.StageDir, 0o700)
}

// Timeouts of the mount's life cycle.
const (
	// rootStatTimeout bounds the stat of the mounted Alcove root.
	rootStatTimeout = 30 * time.Second
	// readyTimeout bounds the wait for a new mount to answer; the kernel
	// sends no event when it has processed INIT, so Mount stats the mount
	// point every readyPoll until it answers.
	readyTimeout = 10 * time.Second
	readyPoll    = 5 * time.Millisecond
	// unmountTimeout bounds the wait for the serve loop after unmount.
	unmountTimeout = 10 * time.Second
	// probeTimeout bounds CheckMount's statfs: a hung daemon counts as
	// broken.
	probeTimeout = 5 * time.Second
	// handshakeTimeout bounds reading a handover request (TAKEOVER).
	handshakeTimeout = 10 * time.Second
	// drainTimeout bounds how long a handover waits for running requests.
	drainTimeout = 30 * time.Second
	// successorTimeout bounds how long the daemon waits for the
	// successor's READY (it rebuilds every node and open file meanwhile).
	successorTimeout = 2 * time.Minute
	// takeoverTimeout bounds the successor's receiving of the state.
	takeoverTimeout = time.Minute
)

// FUSE protocol numbers go-fuse does not export (include/uapi/linux/fuse.h).
const (
	opcodeInit       = 26 // FUSE_INIT
	notifyCodeResend = 7  // FUSE_NOTIFY_RESEND (Linux 6.9+), sent as the error field
)

// Server is a mounted (or taken over) Alcove filesystem.
type Server struct {
	cfg    Config
	vfs    *vfs.VFS
	root   *node
	raw    *rawFS
	srv    *gofuse.Server
	fd     int // the /dev/fuse connection
	mnt    string
	logger klog.Logger

	handover *handoverListener
	handedTo *net.UnixConn // kept open until exit after a handover

	done     chan struct{}
	doneOnce sync.Once
	waitErr  error
}

// Registry is the mount's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.vfs.Metrics().Registry }

// ReadRequests is how many READ requests reached the daemon.
func (s *Server) ReadRequests() int64 { return s.vfs.Metrics().ReadRequests.Load() }

// MountPoint is where the filesystem is mounted.
func (s *Server) MountPoint() string { return s.mnt }

// Wait blocks until the filesystem is unmounted or handed over to a
// successor; it returns ErrHandedOver in the second case, and then the
// process must exit without unmounting: the successor serves the mount,
// and it starts only once this process is gone.
func (s *Server) Wait() error {
	<-s.done
	return s.waitErr
}

// ErrHandedOver is returned by Wait after a successor took the mount over.
var ErrHandedOver = errors.New("fuse connection handed over to a successor")

func (s *Server) finish(err error) {
	s.doneOnce.Do(func() {
		s.waitErr = err
		close(s.done)
	})
}

// Unmount unmounts the filesystem (lazily if it is busy) and waits for the
// serve loop to end.
func (s *Server) Unmount() error {
	if s.handover != nil {
		s.handover.Close()
	}
	err := syscall.Unmount(s.mnt, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(s.mnt, syscall.MNT_DETACH)
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
		err = nil // not mounted any more
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", s.mnt, err)
	}
	select {
	case <-s.done:
	case <-time.After(unmountTimeout):
		return fmt.Errorf("unmount %s: serve loop did not stop", s.mnt)
	}
	return nil
}

// mountOptions are shared by Mount and Takeover: a successor must
// negotiate exactly what its predecessor did.
func mountOptions(cfg *Config) *fs.Options {
	one := cfg.AttrTimeout
	ent := cfg.EntryTimeout
	neg := time.Duration(0)
	return &fs.Options{
		AttrTimeout:     &one,
		EntryTimeout:    &ent,
		NegativeTimeout: &neg,
		ExternalNodeID:  true,
		// Modes are reported as they are: mode 0000 is a mode (go-fuse
		// would otherwise show 0644/0755), and the kernel checks them
		// (default_permissions).
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: gofuse.FUSE_ROOT_ID},
		MountOptions: gofuse.MountOptions{
			FsName:            "alcove:" + cfg.Root,
			Name:              "alcove",
			DirectMountStrict: true,
			MaxWrite:          1 << 20,
			MaxReadAhead:      1 << 20,
			MaxBackground:     64,
			DisableXAttrs:     true,
			DisableSplice:     true,
			// READDIRPLUS: ls -l and stat of a listed directory cost no
			// LOOKUP per entry (raw.go counts its references for the
			// handover; the VFS answers its lookups from the listing).
			Debug:      cfg.Debug,
			AllowOther: os.Geteuid() == 0,
		},
	}
}
