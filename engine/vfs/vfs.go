package vfs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// Client is what the VFS needs of Alcove's client; *client.Client
// satisfies it.
type Client interface {
	Namespace
	Data
}

// Namespace is the metadata part of Client.
type Namespace interface {
	GetStatus(ctx context.Context, path string) (*apiv1.FileInfo, error)
	StatusByID(ctx context.Context, id int64) (*apiv1.FileInfo, error)
	ListStatus(ctx context.Context, path string, recursive, syncUfs bool) ([]*apiv1.FileInfo, error)
	MkdirWith(ctx context.Context, path string, opts client.MkdirOptions) (*apiv1.FileInfo, error)
	Symlink(ctx context.Context, path, target, owner, group string) (*apiv1.FileInfo, error)
	DeleteWith(ctx context.Context, path string, opts client.DeleteOptions) error
	RenameWith(ctx context.Context, src, dst string, opts client.RenameOptions) error
	SetAttribute(ctx context.Context, req *apiv1.SetAttributeRequest) error
	ReleaseOrphans(ctx context.Context, session string, ids []int64) (int, error)
	CreateIncomplete(ctx context.Context, path string, opts client.WriteOptions) (*apiv1.FileInfo, error)
}

// Data is the data part of Client.
type Data interface {
	Create(ctx context.Context, path string, opts client.WriteOptions) (*client.Writer, error)
	WriteCreated(ctx context.Context, info *apiv1.FileInfo, wt apiv1.WriteType) (*client.Writer, error)
	OpenInfo(ctx context.Context, info *apiv1.FileInfo, readType apiv1.ReadType) (*client.Reader, error)
	OpenLocalFile(ctx context.Context, info *apiv1.FileInfo) (*client.LocalFile, error)
	Workers(ctx context.Context) ([]*apiv1.WorkerInfo, error)
}

var _ Client = (*client.Client)(nil)

// RootIno is the root directory's inode number (FUSE's root node id).
const RootIno uint64 = 1

// opTimeout bounds one Alcove call made for an operation; the caller then
// sees EINTR. Operations do not follow the request's cancellation: a
// commit must not stop half-way because the process was interrupted.
const opTimeout = 5 * time.Minute

// Config configures a VFS.
type Config struct {
	// Root is the Alcove path shown as the root directory (cleaned; "/").
	Root string
	// WriteType is used when staged files are committed.
	WriteType apiv1.WriteType
	// StageDir holds the staging files of files being written; it must
	// exist.
	StageDir string
	// Node is this machine's node name: whether a worker is local.
	Node string
	// DisablePassthrough serves every read through the VFS.
	DisablePassthrough bool
	// NoAtime: reads never update atime (mount -o noatime); by default
	// an open for reading updates it by relatime's rule.
	NoAtime bool
	// Session names this filesystem's orphans (files unlinked while open,
	// kept by the master until their last close). A mount uses the same
	// one across restarts, so a new mount releases what a crashed one
	// left (PurgeOrphans). Default: a random one.
	Session string
}

// Caller is the process an operation is made for (FUSE passes it with
// every request). Permission checks (see access) take it.
type Caller struct {
	Uid, Gid, Pid uint32
}

// VFS is Alcove's POSIX filesystem state: nodes by inode number, their
// open handles, stages and io modes. It is safe for concurrent use.
type VFS struct {
	cfg     Config
	c       Client
	metrics *Metrics
	logger  klog.Logger
	root    *Node

	// treeMu guards every node's parent, name, children and orphanPath.
	treeMu sync.RWMutex
	nodes  map[uint64]*Node // live nodes by inode number; guarded by treeMu

	// gen counts this VFS's changes to the namespace and to attributes
	// (at the start and the end of each): a directory listing kept for
	// READDIRPLUS's lookups is used only while it has not moved.
	gen atomic.Uint64

	// capTotal is the cache's capacity as last seen at capAt (checkSpace).
	capMu    sync.Mutex
	capTotal int64
	capAt    time.Time

	usersMu sync.Mutex
	users   map[string]uint32
	groups  map[string]uint32
}

// New returns a VFS over c; rootID is the Alcove file id of cfg.Root.
func New(ctx context.Context, cfg Config, c Client, rootID int64) (*VFS, error) {
	root, err := meta.CleanPath(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("vfs root %q: %w", cfg.Root, err)
	}
	cfg.Root = root
	if cfg.StageDir == "" {
		return nil, fmt.Errorf("%w: vfs needs a stage directory", meta.ErrInvalidArgument)
	}
	if cfg.Session == "" {
		cfg.Session = fmt.Sprintf("vfs-%016x", rand.Uint64())
	}
	v := &VFS{cfg: cfg, c: c, metrics: NewMetrics(), logger: klog.FromContext(ctx),
		nodes: map[uint64]*Node{}, users: map[string]uint32{}, groups: map[string]uint32{}}
	v.root = v.newNode(RootIno, syscall.S_IFDIR, rootID)
	v.nodes[RootIno] = v.root
	return v, nil
}

// mutating marks a change made by this VFS from now until the returned
// function runs: directory listings taken before or meanwhile no longer
// answer lookups (see Node.fromListing).
func (v *VFS) mutating() (done func()) {
	v.gen.Add(1)
	return func() { v.gen.Add(1) }
}

// Root is the root directory's node.
func (v *VFS) Root() *Node { return v.root }

// Metrics are the VFS's counters (per VFS, in their own registry).
func (v *VFS) Metrics() *Metrics { return v.metrics }

// Config is the VFS's configuration (defaults applied).
func (v *VFS) Config() Config { return v.cfg }

// Node returns the live node with inode number ino, or nil.
func (v *VFS) Node(ino uint64) *Node {
	v.treeMu.RLock()
	defer v.treeMu.RUnlock()
	return v.nodes[ino]
}

// opCtx returns the context for the Alcove calls of one operation.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
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
	return meta.Errno(meta.ValidName(name))
}

// Attr is a node's attributes as stat(2) shows them.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // S_IFDIR, S_IFREG or S_IFLNK | permission bits
	Nlink               uint32
	Size                uint64
	Atime, Mtime, Ctime time.Time
	Uid                 uint32
	Gid                 uint32
	Blksize             uint32
	Blocks              uint64 // 512-byte units allocated
}

// IsDir reports whether the attributes are a directory's.
func (a *Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// typeOf is the file type (S_IFMT bits) of an Alcove file.
func typeOf(info *apiv1.FileInfo) uint32 {
	switch {
	case info.GetFolder():
		return syscall.S_IFDIR
	case info.GetSymlinkTarget() != "":
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// fillAttr converts Alcove metadata to attributes.
func (v *VFS) fillAttr(info *apiv1.FileInfo, out *Attr) {
	out.Mode = typeOf(info) | info.GetMode()&0o7777
	out.Nlink = info.GetNlink()
	switch {
	case info.GetFolder():
		out.Size = 4096
		out.Nlink = max(out.Nlink, 2) // from a master that did not count
	case out.Nlink == 0 && !info.GetOrphan():
		out.Nlink = 1 // from a master that did not count
		fallthrough
	default:
		out.Size = uint64(max(info.GetLength(), 0))
	}
	if info.GetSymlinkTarget() != "" {
		out.Mode = syscall.S_IFLNK | 0o777
	}
	out.Ino = inoOf(info)
	out.Mtime = time.UnixMilli(info.GetLastModificationTimeMs())
	out.Atime = timeOr(info.GetAccessTimeMs(), out.Mtime)
	out.Ctime = timeOr(info.GetChangeTimeMs(), out.Mtime)
	out.Uid = v.uid(info.GetOwner())
	out.Gid = v.gid(info.GetGroup())
	out.Blksize = 1 << 20
	// Holes take no space (du of a sparse file).
	out.Blocks = (out.Size - uint64(meta.HoleBytes(info.GetHoles(), info.GetLength(), info.GetBlockSizeBytes())) + 511) / 512
}

func timeOr(ms int64, or time.Time) time.Time {
	if ms == 0 {
		return or
	}
	return time.UnixMilli(ms)
}

// inoOf is the inode number of an Alcove file: the master's (stable
// across commits), else its file id.
func inoOf(info *apiv1.FileInfo) uint64 {
	if ino := info.GetIno(); ino != 0 {
		return uint64(ino)
	}
	return uint64(info.GetFileId())
}

func (v *VFS) uid(owner string) uint32 {
	return v.idOf(owner, v.users, func(s string) (string, error) {
		u, err := user.Lookup(s)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
}

func (v *VFS) gid(group string) uint32 {
	return v.idOf(group, v.groups, func(s string) (string, error) {
		g, err := user.LookupGroup(s)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
}

// idOf turns a stored owner (numeric, or a name resolved locally) into an id.
func (v *VFS) idOf(s string, cache map[string]uint32, lookup func(string) (string, error)) uint32 {
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n)
	}
	v.usersMu.Lock()
	defer v.usersMu.Unlock()
	if id, ok := cache[s]; ok {
		return id
	}
	var id uint32
	if val, err := lookup(s); err == nil {
		if n, err := strconv.ParseUint(val, 10, 32); err == nil {
			id = uint32(n)
		}
	}
	cache[s] = id
	return id
}

// Statfs is what statfs(2) shows.
type Statfs struct {
	Bsize, NameLen                      uint32
	Blocks, Bfree, Bavail, Files, Ffree uint64
}

// Statfs reports the local worker's cache (all workers' when none is local).
func (v *VFS) Statfs(ctx context.Context, out *Statfs) syscall.Errno {
	octx, cancel := opCtx(ctx)
	defer cancel()
	return v.statfs(octx, out)
}

func (v *VFS) statfs(ctx context.Context, out *Statfs) syscall.Errno {
	ws, err := v.c.Workers(ctx)
	if err != nil {
		return errno(err)
	}
	var capacity, used int64
	node := v.cfg.Node
	local := false
	for _, w := range ws {
		if w.GetNode() == node && w.GetState() != apiv1.WorkerState_WORKER_LOST {
			local = true
		}
	}
	for _, w := range ws {
		if w.GetState() == apiv1.WorkerState_WORKER_LOST || (local && w.GetNode() != node) {
			continue
		}
		for _, t := range w.GetTiers() {
			capacity += t.GetCapacityBytes()
			used += t.GetUsedBytes()
		}
	}
	const bsize = 4096
	out.Bsize = bsize
	out.NameLen = meta.MaxNameLength
	out.Blocks = uint64(capacity / bsize)
	out.Bfree = uint64(max(capacity-used, 0) / bsize)
	out.Bavail = out.Bfree
	out.Files = 1 << 40
	out.Ffree = 1 << 40
	return 0
}
