package fuse

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/internal/fdpass"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/vfs"
)

// The handover protocol, on a unix stream socket the running daemon
// listens on:
//
//	successor → "TAKEOVER\n"
//	daemon: parks new FUSE requests, waits for running ones, and sends
//	        a length-prefixed JSON handoverState with the /dev/fuse fd
//	        attached (SCM_RIGHTS)
//	successor: rebuilds nodes, open files and stages (re-leasing cached
//	        blocks), then → "READY\n"  (or "FAIL reason\n": the daemon
//	        resumes serving)
//	daemon: Wait returns ErrHandedOver; the process exits without
//	        unmounting, closing the socket
//	successor: on EOF, writes FUSE_NOTIFY_RESEND so requests the old
//	        daemon read but never answered are queued again, and serves.
const handoverVersion = 1

// predecessorExitTimeout bounds how long a successor waits for the old
// daemon process to exit before it serves anyway.
const predecessorExitTimeout = 30 * time.Second

type handoverState struct {
	Version    int         `json:"version"`
	MountPoint string      `json:"mountPoint"`
	Root       string      `json:"root"`
	Init       []byte      `json:"init"` // the kernel's INIT request
	Nodes      []nodeState `json:"nodes"`
	Files      []fileState `json:"files"`
	NextFh     uint64      `json:"nextFh"`
	WriteType  int32       `json:"writeType"`
	StageDir   string      `json:"stageDir"`
}

// nodeState is a node as the VFS hands it over, with the kernel's lookup
// count (the same JSON as before the VFS existed: the fields are inlined).
type nodeState struct {
	vfs.NodeState
	Lookups uint64 `json:"lookups"`
}

type fileState struct {
	Fh uint64 `json:"fh"`
	kfile
}

type handoverListener struct {
	l    *net.UnixListener
	path string
}

func (h *handoverListener) Close() error {
	err := h.l.Close()
	os.Remove(h.path)
	return err
}

func (s *Server) listenHandover(path string) (*handoverListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for handover on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	h := &handoverListener{l: l, path: path}
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			if s.serveHandover(c) {
				return
			}
		}
	}()
	return h, nil
}

// serveHandover runs one handover; true when the connection is gone.
func (s *Server) serveHandover(c *net.UnixConn) (handedOver bool) {
	defer func() {
		// After a handover the socket stays open until this process
		// exits: its EOF tells the successor that no reader of this
		// process can take requests off the shared connection any more.
		if !handedOver {
			c.Close()
		}
	}()
	logger := s.logger.WithValues("handover", c.RemoteAddr())
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "TAKEOVER\n" {
		logger.Info("Ignoring handover connection", "request", strings.TrimSpace(line), "err", err)
		return false
	}
	logger.Info("Successor asks for the mount; draining requests")
	if !s.raw.gate.freeze(drainTimeout) {
		s.raw.gate.thaw()
		fmt.Fprintf(c, "FAIL requests still running after %v\n", drainTimeout)
		logger.Info("Handover refused: requests still running")
		return false
	}
	// No request runs now, though go-fuse may still be writing the last
	// replies (it writes after the handler returns). The snapshot does
	// not depend on them: it holds what the handlers did, the kernel gets
	// those replies from this process, which lives until READY and
	// beyond, and a request this process never answers is queued again
	// by the successor's FUSE_NOTIFY_RESEND, sent only once this process
	// has exited.
	st := s.snapshot()
	body, err := json.Marshal(st)
	if err == nil {
		err = sendWithFd(c, body, s.fd)
	}
	if err == nil {
		c.SetDeadline(time.Now().Add(successorTimeout))
		line, err = br.ReadString('\n')
		if err == nil && line != "READY\n" {
			err = fmt.Errorf("successor: %s", strings.TrimSpace(line))
		}
	}
	if err != nil {
		logger.Error(err, "Handover failed; serving on")
		s.raw.gate.thaw()
		return false
	}
	logger.Info("Handed the mount over; this daemon stops serving it", "nodes", len(st.Nodes), "openFiles", len(st.Files))
	s.handover.l.Close() // the successor listens on the path now
	s.handedTo = c
	s.finish(ErrHandedOver)
	return true
}

func (s *Server) snapshot() *handoverState {
	r := s.raw
	st := &handoverState{
		Version: handoverVersion, MountPoint: s.mnt, Root: s.cfg.Root,
		WriteType: int32(s.cfg.WriteType), StageDir: s.cfg.StageDir,
	}
	ks := s.srv.KernelSettings()
	st.Init = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(ks)), unsafe.Sizeof(*ks))...)
	r.mu.Lock()
	st.NextFh = r.nextFh
	want := map[uint64]uint64{}
	for id, n := range r.lookups {
		want[id] = n
	}
	for fh, f := range r.files {
		st.Files = append(st.Files, fileState{Fh: fh, kfile: *f})
		if _, ok := want[f.NodeID]; !ok {
			want[f.NodeID] = 0
		}
	}
	r.mu.Unlock()
	seen := map[uint64]bool{}
	var add func(id uint64)
	add = func(id uint64) {
		if seen[id] || id == gofuse.FUSE_ROOT_ID {
			return
		}
		seen[id] = true
		n := s.vfs.Node(id)
		if n == nil {
			return
		}
		ns := nodeState{NodeState: n.State(), Lookups: want[id]}
		if ns.Parent != 0 {
			add(ns.Parent)
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for id := range want {
		add(id)
	}
	return st
}

// Takeover connects to the daemon serving a mount at socket, receives its
// /dev/fuse connection and open-file table, and serves the mount from this
// process. cfg.Client (and the daemon settings) are this process's; the
// mount point, root and stage directory are the predecessor's.
func Takeover(ctx context.Context, cfg Config, socket string) (*Server, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to the running daemon at %s: %w", socket, err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(takeoverTimeout))
	if _, err := io.WriteString(c, "TAKEOVER\n"); err != nil {
		return nil, fmt.Errorf("ask for handover: %w", err)
	}
	body, fd, err := recvWithFd(c)
	if err != nil {
		return nil, fmt.Errorf("receive handover: %w", err)
	}
	fail := func(err error) (*Server, error) {
		fmt.Fprintf(c, "FAIL %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		syscall.Close(fd)
		return nil, err
	}
	var st handoverState
	if err := json.Unmarshal(body, &st); err != nil {
		return fail(fmt.Errorf("decode handover: %w", err))
	}
	if st.Version != handoverVersion {
		return fail(fmt.Errorf("handover version %d, this daemon speaks %d", st.Version, handoverVersion))
	}
	cfg.MountPoint, cfg.Root, cfg.StageDir = st.MountPoint, st.Root, st.StageDir
	if cfg.HandoverSocket == "" {
		cfg.HandoverSocket = socket
	}
	if err := cfg.setDefaults(); err != nil {
		return fail(err)
	}
	logger := klog.FromContext(ctx).WithValues("mountPoint", cfg.MountPoint, "root", cfg.Root)
	ctx = klog.NewContext(ctx, logger)
	octx, cancel := context.WithTimeout(ctx, rootStatTimeout)
	defer cancel()
	info, err := cfg.Client.GetStatus(octx, cfg.Root)
	if err != nil {
		return fail(fmt.Errorf("stat root %s: %w", cfg.Root, err))
	}
	s, raw, opts, err := newServer(ctx, cfg, info.GetFileId())
	if err != nil {
		return fail(err)
	}

	srv, sfd, err := serverFromInit(raw, opts, st.Init, fd)
	if err != nil {
		return fail(err)
	}
	fd = sfd
	if err := s.restore(octx, &st); err != nil {
		return fail(fmt.Errorf("rebuild open files: %w", err))
	}
	if _, err := io.WriteString(c, "READY\n"); err != nil {
		return nil, fmt.Errorf("confirm handover: %w", err)
	}
	// Wait until the predecessor process is gone (its end of the socket
	// closes when it exits): while it lives its readers still take
	// requests off the shared connection and park them, and a request
	// parked after the resend below would never be answered.
	c.SetDeadline(time.Now().Add(predecessorExitTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil {
		logger.Error(err, "The predecessor did not exit in time; serving anyway (requests it still reads may hang)", "timeout", predecessorExitTimeout)
	}
	if err := notifyResend(fd); err != nil {
		logger.Error(err, "FUSE_NOTIFY_RESEND failed: requests the old daemon read but did not answer may hang")
	}
	s.start(srv, fd)
	logger.Info("Took the mount over", "nodes", len(st.Nodes), "openFiles", len(st.Files))
	return s, nil
}

// serverFromInit builds a go-fuse server for an already initialised
// connection: go-fuse insists on reading INIT first, so it reads the
// predecessor's INIT from a socketpair, whose fd number is then swapped
// for the /dev/fuse fd (dup3) before serving starts.
func serverFromInit(raw gofuse.RawFileSystem, opts *fs.Options, init []byte, fuseFd int) (*gofuse.Server, int, error) {
	o := opts.MountOptions
	o.DirectMount, o.DirectMountStrict = false, false
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("socketpair: %w", err)
	}
	defer syscall.Close(sp[1])
	var in gofuse.InitIn
	if len(init) != int(unsafe.Sizeof(in)) {
		syscall.Close(sp[0])
		return nil, -1, fmt.Errorf("handover INIT is %d bytes, want %d", len(init), unsafe.Sizeof(in))
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&in)), unsafe.Sizeof(in)), init)
	in.Length = uint32(unsafe.Sizeof(in))
	in.Opcode = opcodeInit
	in.Unique = 1
	in.NodeId = 0
	in.TotalExtlen = 0
	if _, err := syscall.Write(sp[1], unsafe.Slice((*byte)(unsafe.Pointer(&in)), unsafe.Sizeof(in))); err != nil {
		syscall.Close(sp[0])
		return nil, -1, fmt.Errorf("replay INIT: %w", err)
	}
	srv, err := gofuse.NewServer(raw, fmt.Sprintf("/dev/fd/%d", sp[0]), &o)
	if err != nil {
		syscall.Close(sp[0])
		return nil, -1, fmt.Errorf("replay INIT: %w", err)
	}
	if err := unix.Dup3(fuseFd, sp[0], unix.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("install /dev/fuse fd: %w", err)
	}
	syscall.Close(fuseFd)
	return srv, sp[0], nil
}

// restore rebuilds the predecessor's nodes (in the VFS, then in go-fuse
// with the kernel's lookup counts), stages and open files.
func (s *Server) restore(ctx context.Context, st *handoverState) error {
	r := s.raw
	bridge := r.bridge
	nodes := make([]vfs.NodeState, len(st.Nodes))
	for i, ns := range st.Nodes {
		nodes[i] = ns.NodeState
	}
	if err := s.vfs.Restore(nodes); err != nil {
		return err
	}
	for _, ns := range st.Nodes {
		var out gofuse.EntryOut
		for i := uint64(0); i < max(ns.Lookups, 1); i++ {
			if code := bridge.Lookup(nil, &gofuse.InHeader{NodeId: ns.Ino}, ".", &out); code != gofuse.OK {
				return fmt.Errorf("rebuild node %d (%s): %w", ns.Ino, ns.Path, syscall.Errno(code))
			}
		}
		if ns.Lookups > 0 {
			r.lookups[ns.Ino] = ns.Lookups
		}
	}
	// Link the go-fuse inodes under their parents too, as the kernel
	// sees them (the VFS has its own tree already).
	for _, ns := range st.Nodes {
		if ns.Parent == 0 || ns.Name == "" {
			continue
		}
		parent := s.root.EmbeddedInode()
		cin := s.root.m.restored(ns.Ino)
		if ns.Parent != gofuse.FUSE_ROOT_ID {
			parent = s.root.m.restored(ns.Parent)
		}
		if cin == nil || parent == nil {
			continue
		}
		parent.AddChild(ns.Name, cin, true)
	}
	s.root.m.rebuiltMu.Lock()
	clear(s.root.m.rebuilt) // go-fuse owns the inodes from here on
	s.root.m.rebuiltMu.Unlock()
	for _, f := range st.Files {
		out := gofuse.OpenOut{}
		in := &gofuse.OpenIn{InHeader: gofuse.InHeader{NodeId: f.NodeID}, Flags: f.Flags &^ (syscall.O_TRUNC | syscall.O_CREAT | syscall.O_EXCL)}
		var code gofuse.Status
		if f.Dir {
			code = bridge.OpenDir(nil, in, &out)
		} else {
			code = bridge.Open(nil, in, &out)
		}
		if code != gofuse.OK {
			s.logger.Info("Open file could not be rebuilt; its next use fails with EBADF", "node", f.NodeID, "errno", syscall.Errno(code))
			continue
		}
		r.files[f.Fh] = &kfile{bridgeFh: out.Fh, NodeID: f.NodeID, Flags: f.Flags, Dir: f.Dir}
	}
	r.nextFh = max(r.nextFh, st.NextFh)
	s.vfs.FinishRestore(ctx)
	return nil
}

// notifyResend asks the kernel to queue again every request that was read
// from the connection but not answered (FUSE_NOTIFY_RESEND, Linux 6.9+).
func notifyResend(fd int) error {
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:], 16)
	binary.LittleEndian.PutUint32(hdr[4:], notifyCodeResend)
	_, err := syscall.Write(fd, hdr[:])
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("kernel lacks FUSE_NOTIFY_RESEND: %w", err)
	}
	return err
}

func sendWithFd(c *net.UnixConn, body []byte, fd int) error {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(body)))
	if err := fdpass.Send(c, n[:], fd); err != nil {
		return err
	}
	_, err := c.Write(body)
	return err
}

func recvWithFd(c *net.UnixConn) ([]byte, int, error) {
	var n [8]byte
	got, fd, err := fdpass.Recv(c, n[:])
	if err != nil {
		return nil, -1, err
	}
	if fd < 0 {
		return nil, -1, fmt.Errorf("%w: no /dev/fuse fd received", meta.ErrUnavailable)
	}
	if _, err := io.ReadFull(c, n[got:]); err != nil {
		syscall.Close(fd)
		return nil, -1, err
	}
	size := binary.BigEndian.Uint64(n[:])
	if size > 256<<20 {
		syscall.Close(fd)
		return nil, -1, fmt.Errorf("handover state of %d bytes", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		syscall.Close(fd)
		return nil, -1, err
	}
	return body, fd, nil
}
