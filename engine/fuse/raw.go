package fuse

import (
	"encoding/binary"
	"sync"
	"syscall"
	"time"
	"unsafe"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/alcove-io/alcove/engine/vfs"
)

// rawFS sits between the kernel and go-fuse's node bridge. It owns what a
// successor daemon must inherit to keep serving the same connection:
//   - the file handle numbers the kernel holds (kernel fh → bridge fh), so
//     a successor maps the kernel's numbers to its own re-opened handles;
//   - the kernel's lookup count per node id, so a successor can rebuild
//     the nodes the kernel references;
//   - a gate that parks new requests and drains running ones before the
//     connection is handed over.
//
// It also counts READ requests (to prove passthrough) and times every op.
//
// Every request method passes the gate. The bridge is a named field, not
// embedded, so a method go-fuse adds cannot bypass the gate unnoticed (the
// build fails until it is written here), and TestRawGated checks that
// each method parks at a frozen gate.
type rawFS struct {
	bridge gofuse.RawFileSystem // go-fuse's fs bridge
	m      *vfs.Metrics
	// releasing brackets a RELEASE of a node id (vfs.Node.BeginRelease);
	// nil for none.
	releasing func(nodeID uint64) (end func())

	gate gate

	mu      sync.Mutex
	nextFh  uint64
	files   map[uint64]*kfile
	lookups map[uint64]uint64
}

// kfile is an open file or directory as the kernel knows it.
type kfile struct {
	bridgeFh uint64
	NodeID   uint64 `json:"node"`
	Flags    uint32 `json:"flags"`
	Dir      bool   `json:"dir,omitempty"`
}

var _ gofuse.RawFileSystem = (*rawFS)(nil)

func newRawFS(bridge gofuse.RawFileSystem, m *vfs.Metrics, releasing func(uint64) func()) *rawFS {
	r := &rawFS{bridge: bridge, m: m, releasing: releasing, nextFh: 1, files: map[uint64]*kfile{}, lookups: map[uint64]uint64{}}
	r.gate.cond = sync.NewCond(&r.gate.mu)
	return r
}

// gate parks requests during a handover.
type gate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	frozen   bool
	inflight int
	parked   int // requests waiting at the frozen gate (tests watch it)
}

func (g *gate) enter() {
	g.mu.Lock()
	if g.frozen {
		g.parked++
		g.cond.Broadcast()
		for g.frozen {
			g.cond.Wait()
		}
		g.parked--
	}
	g.inflight++
	g.mu.Unlock()
}

func (g *gate) leave() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// freeze parks new requests and waits up to timeout for running ones.
func (g *gate) freeze(timeout time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.frozen = true
	t := time.AfterFunc(timeout, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	for g.inflight > 0 && time.Now().Before(deadline) {
		g.cond.Wait()
	}
	return g.inflight == 0
}

func (g *gate) thaw() {
	g.mu.Lock()
	g.frozen = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// begin enters the gate and returns the function that ends the op.
func (r *rawFS) begin(op string) func(gofuse.Status) {
	r.gate.enter()
	start := time.Now()
	return func(st gofuse.Status) {
		r.gate.leave()
		r.m.OpLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if st != gofuse.OK && st != gofuse.ENOENT {
			r.m.OpErrors.WithLabelValues(op, syscall.Errno(st).Error()).Inc()
		}
	}
}

// refuse answers a request the filesystem does not support; it passes the
// gate like every request, so nothing is answered while frozen.
func (r *rawFS) refuse(st gofuse.Status) gofuse.Status {
	r.gate.enter()
	r.gate.leave()
	return st
}

func (r *rawFS) addLookup(nodeID uint64) {
	if nodeID == 0 {
		return
	}
	r.mu.Lock()
	r.lookups[nodeID]++
	r.mu.Unlock()
}

// bridgeFh maps a kernel fh to go-fuse's.
func (r *rawFS) bridgeFh(kfh uint64) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.files[kfh]
	if !ok {
		return 0, false
	}
	return f.bridgeFh, true
}

// register records a new open and returns the kernel's number for it.
func (r *rawFS) register(bridgeFh, nodeID uint64, flags uint32, dir bool) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	kfh := r.nextFh
	r.nextFh++
	r.files[kfh] = &kfile{bridgeFh: bridgeFh, NodeID: nodeID, Flags: flags, Dir: dir}
	return kfh
}

func (r *rawFS) unregister(kfh uint64) {
	r.mu.Lock()
	delete(r.files, kfh)
	r.mu.Unlock()
}

func (r *rawFS) Lookup(cancel <-chan struct{}, h *gofuse.InHeader, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	done := r.begin("lookup")
	defer func() { done(st) }()
	st = r.bridge.Lookup(cancel, h, name, out)
	if st == gofuse.OK {
		r.addLookup(out.NodeId)
	}
	return st
}

func (r *rawFS) Forget(nodeID, nlookup uint64) {
	r.gate.enter()
	defer r.gate.leave()
	r.mu.Lock()
	have, ok := r.lookups[nodeID]
	if ok {
		if nlookup >= have {
			delete(r.lookups, nodeID)
		} else {
			r.lookups[nodeID] = have - nlookup
		}
	}
	r.mu.Unlock()
	if !ok && nodeID != gofuse.FUSE_ROOT_ID {
		return // never handed out by this process: nothing to forget
	}
	r.bridge.Forget(nodeID, nlookup)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *gofuse.MkdirIn, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	done := r.begin("mkdir")
	defer func() { done(st) }()
	st = r.bridge.Mkdir(cancel, in, name, out)
	if st == gofuse.OK {
		r.addLookup(out.NodeId)
	}
	return st
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *gofuse.MknodIn, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, h *gofuse.InHeader, target, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	done := r.begin("symlink")
	defer func() { done(st) }()
	st = r.bridge.Symlink(cancel, h, target, name, out)
	if st == gofuse.OK {
		r.addLookup(out.NodeId)
	}
	return st
}

func (r *rawFS) Link(cancel <-chan struct{}, in *gofuse.LinkIn, name string, out *gofuse.EntryOut) gofuse.Status {
	return r.refuse(gofuse.Status(syscall.EPERM))
}

func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *gofuse.CreateIn, out *gofuse.CreateOut) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) Create(cancel <-chan struct{}, in *gofuse.CreateIn, name string, out *gofuse.CreateOut) (st gofuse.Status) {
	done := r.begin("create")
	defer func() { done(st) }()
	st = r.bridge.Create(cancel, in, name, out)
	if st == gofuse.OK {
		r.addLookup(out.NodeId)
		out.Fh = r.register(out.Fh, out.NodeId, in.Flags, false)
	}
	return st
}

func (r *rawFS) Open(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) (st gofuse.Status) {
	done := r.begin("open")
	defer func() { done(st) }()
	st = r.bridge.Open(cancel, in, out)
	if st == gofuse.OK {
		out.Fh = r.register(out.Fh, in.NodeId, in.Flags, false)
	}
	return st
}

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) (st gofuse.Status) {
	done := r.begin("opendir")
	defer func() { done(st) }()
	st = r.bridge.OpenDir(cancel, in, out)
	if st == gofuse.OK {
		out.Fh = r.register(out.Fh, in.NodeId, in.Flags, true)
	}
	return st
}

// withFh times op, maps the kernel's file handle in *fh to go-fuse's, and
// runs call; an unknown handle is EBADF.
func (r *rawFS) withFh(op string, fh *uint64, call func() gofuse.Status) (st gofuse.Status) {
	done := r.begin(op)
	defer func() { done(st) }()
	bfh, ok := r.bridgeFh(*fh)
	if !ok {
		return gofuse.EBADF
	}
	*fh = bfh
	return call()
}

func (r *rawFS) Read(cancel <-chan struct{}, in *gofuse.ReadIn, buf []byte) (res gofuse.ReadResult, st gofuse.Status) {
	r.m.ReadRequests.Add(1)
	st = r.withFh("read", &in.Fh, func() (st gofuse.Status) {
		res, st = r.bridge.Read(cancel, in, buf)
		return st
	})
	return res, st
}

func (r *rawFS) Write(cancel <-chan struct{}, in *gofuse.WriteIn, data []byte) (n uint32, st gofuse.Status) {
	st = r.withFh("write", &in.Fh, func() (st gofuse.Status) {
		n, st = r.bridge.Write(cancel, in, data)
		return st
	})
	return n, st
}

func (r *rawFS) Writev(cancel <-chan struct{}, in *gofuse.WriteIn, data [][]byte) (n uint32, st gofuse.Status) {
	st = r.withFh("write", &in.Fh, func() (st gofuse.Status) {
		n, st = r.bridge.Writev(cancel, in, data)
		return st
	})
	return n, st
}

func (r *rawFS) Flush(cancel <-chan struct{}, in *gofuse.FlushIn) gofuse.Status {
	return r.withFh("flush", &in.Fh, func() gofuse.Status { return r.bridge.Flush(cancel, in) })
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *gofuse.FsyncIn) gofuse.Status {
	return r.withFh("fsync", &in.Fh, func() gofuse.Status { return r.bridge.Fsync(cancel, in) })
}

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *gofuse.FsyncIn) gofuse.Status {
	return r.withFh("fsyncdir", &in.Fh, func() gofuse.Status { return r.bridge.FsyncDir(cancel, in) })
}

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *gofuse.FallocateIn) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) Lseek(cancel <-chan struct{}, in *gofuse.LseekIn, out *gofuse.LseekOut) gofuse.Status {
	return r.refuse(gofuse.ENOSYS) // the kernel then seeks by itself
}

func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *gofuse.CopyFileRangeIn) (uint32, gofuse.Status) {
	return 0, r.refuse(gofuse.ENOSYS) // the kernel falls back to read + write
}

func (r *rawFS) Ioctl(cancel <-chan struct{}, in *gofuse.IoctlIn, inbuf []byte, out *gofuse.IoctlOut, outbuf []byte) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) GetLk(cancel <-chan struct{}, in *gofuse.LkIn, out *gofuse.LkOut) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	return r.refuse(gofuse.ENOSYS)
}

func (r *rawFS) Release(cancel <-chan struct{}, in *gofuse.ReleaseIn) {
	done := r.begin("release")
	defer done(gofuse.OK)
	fh, ok := r.bridgeFh(in.Fh)
	if !ok {
		return
	}
	r.unregister(in.Fh)
	in.Fh = fh
	if r.releasing != nil {
		// Opens of the node wait until go-fuse is done too (it drops
		// the passthrough backing id after the handle's Release).
		defer r.releasing(in.NodeId)()
	}
	r.bridge.Release(cancel, in)
}

func (r *rawFS) ReleaseDir(in *gofuse.ReleaseIn) {
	done := r.begin("releasedir")
	defer done(gofuse.OK)
	fh, ok := r.bridgeFh(in.Fh)
	if !ok {
		return
	}
	r.unregister(in.Fh)
	in.Fh = fh
	r.bridge.ReleaseDir(in)
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return r.withFh("readdir", &in.Fh, func() gofuse.Status { return r.bridge.ReadDir(cancel, in, out) })
}

// ReadDirPlus counts the references its entries hand the kernel: the
// kernel links every entry of the reply that has a node id (and forgets
// the ones it cannot link; fs/fuse/readdir.c, parse_dirplusfile).
func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	st := r.withFh("readdirplus", &in.Fh, func() gofuse.Status { return r.bridge.ReadDirPlus(cancel, in, out) })
	if st == gofuse.OK {
		for _, id := range plusNodeIDs(out.Bytes()) {
			r.addLookup(id)
		}
	}
	return st
}

// plusNodeIDs returns the node ids of a READDIRPLUS reply's entries: each
// is an EntryOut, a dirent (ino, off, namelen, type) and the name padded
// to 8 bytes.
func plusNodeIDs(buf []byte) []uint64 {
	const direntSize = 24
	entrySize := int(unsafe.Sizeof(gofuse.EntryOut{}))
	var ids []uint64
	for len(buf) >= entrySize+direntSize {
		e := (*gofuse.EntryOut)(unsafe.Pointer(&buf[0]))
		nameLen := int(binary.LittleEndian.Uint32(buf[entrySize+16:]))
		if e.NodeId != 0 {
			ids = append(ids, e.NodeId)
		}
		n := entrySize + direntSize + (nameLen+7)&^7
		if n > len(buf) {
			break
		}
		buf = buf[n:]
	}
	return ids
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *gofuse.GetAttrIn, out *gofuse.AttrOut) (st gofuse.Status) {
	done := r.begin("getattr")
	defer func() { done(st) }()
	if in.Flags()&gofuse.FUSE_GETATTR_FH != 0 {
		fh, ok := r.bridgeFh(in.Fh())
		if !ok {
			in.Flags_ &^= gofuse.FUSE_GETATTR_FH
			in.Fh_ = 0
		} else {
			in.Fh_ = fh
		}
	}
	return r.bridge.GetAttr(cancel, in, out)
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *gofuse.StatxIn, out *gofuse.StatxOut) gofuse.Status {
	return r.refuse(gofuse.ENOSYS) // the kernel falls back to GETATTR
}

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *gofuse.SetAttrIn, out *gofuse.AttrOut) (st gofuse.Status) {
	done := r.begin("setattr")
	defer func() { done(st) }()
	if in.Valid&gofuse.FATTR_FH != 0 {
		fh, ok := r.bridgeFh(in.Fh)
		if !ok {
			in.Valid &^= gofuse.FATTR_FH
			in.Fh = 0
		} else {
			in.Fh = fh
		}
	}
	return r.bridge.SetAttr(cancel, in, out)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, h *gofuse.InHeader, name string) (st gofuse.Status) {
	done := r.begin("unlink")
	defer func() { done(st) }()
	return r.bridge.Unlink(cancel, h, name)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, h *gofuse.InHeader, name string) (st gofuse.Status) {
	done := r.begin("rmdir")
	defer func() { done(st) }()
	return r.bridge.Rmdir(cancel, h, name)
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *gofuse.RenameIn, oldName, newName string) (st gofuse.Status) {
	done := r.begin("rename")
	defer func() { done(st) }()
	return r.bridge.Rename(cancel, in, oldName, newName)
}

func (r *rawFS) StatFs(cancel <-chan struct{}, h *gofuse.InHeader, out *gofuse.StatfsOut) (st gofuse.Status) {
	done := r.begin("statfs")
	defer func() { done(st) }()
	return r.bridge.StatFs(cancel, h, out)
}

func (r *rawFS) Access(cancel <-chan struct{}, in *gofuse.AccessIn) (st gofuse.Status) {
	done := r.begin("access")
	defer func() { done(st) }()
	return r.bridge.Access(cancel, in)
}

func (r *rawFS) Readlink(cancel <-chan struct{}, h *gofuse.InHeader) (out []byte, st gofuse.Status) {
	done := r.begin("readlink")
	defer func() { done(st) }()
	return r.bridge.Readlink(cancel, h)
}

// The requests below reach no filesystem code of Alcove's (go-fuse answers
// them itself: xattrs are disabled at mount), but they pass the gate like
// every other.

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string, dest []byte) (sz uint32, st gofuse.Status) {
	done := r.begin("getxattr")
	defer func() { done(st) }()
	return r.bridge.GetXAttr(cancel, h, attr, dest)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *gofuse.InHeader, dest []byte) (sz uint32, st gofuse.Status) {
	done := r.begin("listxattr")
	defer func() { done(st) }()
	return r.bridge.ListXAttr(cancel, h, dest)
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *gofuse.SetXAttrIn, attr string, data []byte) (st gofuse.Status) {
	done := r.begin("setxattr")
	defer func() { done(st) }()
	return r.bridge.SetXAttr(cancel, in, attr, data)
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string) (st gofuse.Status) {
	done := r.begin("removexattr")
	defer func() { done(st) }()
	return r.bridge.RemoveXAttr(cancel, h, attr)
}

// Not requests: go-fuse's server calls these itself.

func (r *rawFS) String() string          { return r.bridge.String() }
func (r *rawFS) SetDebug(debug bool)     { r.bridge.SetDebug(debug) }
func (r *rawFS) Init(srv *gofuse.Server) { r.bridge.Init(srv) }
func (r *rawFS) OnUnmount()              { r.bridge.OnUnmount() }
