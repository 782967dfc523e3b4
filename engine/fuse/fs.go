// Package fuse is Alcove's POSIX view: a go-fuse filesystem over the Go
// client, with kernel passthrough for files cached on the local worker,
// stage-and-commit writes (append, overwrite, truncate), and a live
// handover of the /dev/fuse connection to a successor daemon. See README.md
// for exactly what is and is not supported.
package fuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
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
	// $TMPDIR/alcove-fuse-stage). It must be on a local filesystem; a
	// successor daemon reuses the staging files of open files.
	StageDir string
	// AttrTimeout and EntryTimeout are the kernel's caching times for
	// attributes and names (default 1 s).
	AttrTimeout, EntryTimeout time.Duration
	// DisablePassthrough serves every read through the daemon.
	DisablePassthrough bool
	// ReadAheadKB is set on the mount's BDI (default 4096; 0 keeps it).
	ReadAheadKB int
	// HandoverSocket, when set, is a unix socket on which this daemon
	// hands its live /dev/fuse connection to a successor (`alcove fuse
	// --takeover SOCKET`).
	HandoverSocket string
	// Debug logs every FUSE request.
	Debug bool
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
		c.StageDir = os.TempDir() + "/alcove-fuse-stage"
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

// filesystem is the state the nodes share.
type filesystem struct {
	cfg     Config
	c       *client.Client
	metrics *metrics
	logger  klog.Logger
	root    *node

	// restore maps kernel node ids to nodes rebuilt from a predecessor's
	// handover; LookupNode serves them.
	restoreMu sync.Mutex
	restore   map[uint64]*node

	// nodes are the live nodes by inode number (= kernel node id).
	nodesMu sync.Mutex
	nodes   map[uint64]*node

	usersMu sync.Mutex
	users   map[string]uint32
	groups  map[string]uint32
}

func newFilesystem(cfg Config, logger klog.Logger) *filesystem {
	return &filesystem{cfg: cfg, c: cfg.Client, metrics: newMetrics(), logger: logger,
		users: map[string]uint32{}, groups: map[string]uint32{}, restore: map[uint64]*node{}, nodes: map[uint64]*node{}}
}

func (f *filesystem) track(n *node) {
	f.nodesMu.Lock()
	defer f.nodesMu.Unlock()
	ino := n.StableAttr().Ino
	//lint:ignore SA1019 OnForget also untracks; this covers the window between the kernel's FORGET and OnForget.
	if old, ok := f.nodes[ino]; !ok || old.Forgotten() {
		f.nodes[ino] = n
	}
}

func (f *filesystem) untrack(n *node) {
	f.nodesMu.Lock()
	defer f.nodesMu.Unlock()
	ino := n.StableAttr().Ino
	if f.nodes[ino] == n {
		delete(f.nodes, ino)
	}
}

func (f *filesystem) node(ino uint64) *node {
	f.nodesMu.Lock()
	defer f.nodesMu.Unlock()
	return f.nodes[ino]
}

// ctx returns a context for a Alcove call made on behalf of a FUSE request.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
}

// errno maps an Alcove error to the errno the caller sees.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	return meta.Errno(err)
}

// checkName rejects names the namespace cannot hold.
func checkName(name string) syscall.Errno {
	if len(name) > meta.MaxNameLength {
		return syscall.ENAMETOOLONG
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return syscall.EINVAL
	}
	return 0
}

// ino is the inode number shown for an Alcove file: its file id. The root
// of the mount is always FUSE's root id.
func ino(info *apiv1.FileInfo) uint64 { return uint64(info.GetFileId()) }

func (f *filesystem) uid(owner string) uint32 {
	return f.idOf(owner, f.users, func(s string) (string, error) {
		u, err := user.Lookup(s)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
}

func (f *filesystem) gid(group string) uint32 {
	return f.idOf(group, f.groups, func(s string) (string, error) {
		g, err := user.LookupGroup(s)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
}

// idOf turns a stored owner (numeric, or a name resolved locally) into an id.
func (f *filesystem) idOf(s string, cache map[string]uint32, lookup func(string) (string, error)) uint32 {
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n)
	}
	f.usersMu.Lock()
	defer f.usersMu.Unlock()
	if id, ok := cache[s]; ok {
		return id
	}
	var id uint32
	if v, err := lookup(s); err == nil {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			id = uint32(n)
		}
	}
	cache[s] = id
	return id
}

// fillAttr converts Alcove metadata to a FUSE attribute.
func (f *filesystem) fillAttr(info *apiv1.FileInfo, out *gofuse.Attr) {
	mode := info.GetMode() & 0o7777
	if info.GetFolder() {
		if mode == 0 {
			mode = 0o755
		}
		out.Mode = syscall.S_IFDIR | mode
		out.Nlink = 2
		out.Size = 4096
	} else {
		if mode == 0 {
			mode = 0o644
		}
		out.Mode = syscall.S_IFREG | mode
		out.Nlink = 1
		out.Size = uint64(max(info.GetLength(), 0))
	}
	out.Ino = ino(info)
	ms := info.GetLastModificationTimeMs()
	out.SetTimes(nil, ptrTime(ms), ptrTime(ms))
	out.Uid = f.uid(info.GetOwner())
	out.Gid = f.gid(info.GetGroup())
	out.Blksize = 1 << 20
}

func ptrTime(ms int64) *time.Time {
	t := time.UnixMilli(ms)
	return &t
}

// statfs reports the local worker's cache (all workers' when none is local).
func (f *filesystem) statfs(ctx context.Context, out *gofuse.StatfsOut) syscall.Errno {
	ws, err := f.c.Workers(ctx)
	if err != nil {
		return errno(err)
	}
	var capacity, used int64
	node := f.c.Config().Node
	local := false
	for _, w := range ws {
		if w.GetNode() == node && w.GetState() != "LOST" {
			local = true
		}
	}
	for _, w := range ws {
		if w.GetState() == "LOST" || (local && w.GetNode() != node) {
			continue
		}
		for _, t := range w.GetTiers() {
			capacity += t.GetCapacityBytes()
			used += t.GetUsedBytes()
		}
	}
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.NameLen = meta.MaxNameLength
	out.Blocks = uint64(capacity / bsize)
	free := max(capacity-used, 0)
	out.Bfree = uint64(free / bsize)
	out.Bavail = out.Bfree
	out.Files = 1 << 40
	out.Ffree = 1 << 40
	return 0
}

// Server is a mounted (or taken over) Alcove filesystem.
type Server struct {
	fsys   *filesystem
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
func (s *Server) Registry() *prometheus.Registry { return s.fsys.metrics.reg }

// ReadRequests is how many READ requests reached the daemon.
func (s *Server) ReadRequests() int64 { return s.fsys.metrics.readRequests.Load() }

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
	case <-time.After(10 * time.Second):
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
			// The handover tracks the kernel's lookup counts itself;
			// READDIRPLUS would hand out references it cannot see.
			DisableReadDirPlus: true,
			Debug:              cfg.Debug,
			AllowOther:         os.Geteuid() == 0,
		},
	}
}
