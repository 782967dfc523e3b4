package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// ReadStats counts where a reader's bytes came from.
type ReadStats struct {
	ShortCircuit atomic.Int64 // local worker's cache file, read through a passed fd
	Remote       atomic.Int64 // a worker's cache over gRPC
	UFS          atomic.Int64 // the UFS, through a worker (cache miss)
}

// Reader reads a file with locality. Read/Seek are sequential and not safe
// for concurrent use; ReadAt is.
type Reader struct {
	c        *Client
	ctx      context.Context
	info     *apiv1.FileInfo
	readType apiv1.ReadType
	pos      int64
	src      *source
	pf       *prefetcher // sequential reads of remotely cached blocks
	Stats    ReadStats
	// noSendfile: WriteTo's output refused sendfile once (see sendLocal).
	noSendfile bool

	mu     sync.Mutex // guards locals, idle and load (ReadAt)
	locals map[int64]*source
	idle   []*source
	load   loader
}

// OpenFile opens a complete file for reading.
func (c *Client) OpenFile(ctx context.Context, path string, readType apiv1.ReadType) (*Reader, error) {
	info, err := c.GetStatus(ctx, path)
	if err != nil {
		return nil, err
	}
	return c.OpenInfo(ctx, info, readType)
}

// OpenInfo opens the complete file info describes (from GetStatus or
// StatusByID, with block locations) for reading.
func (c *Client) OpenInfo(ctx context.Context, info *apiv1.FileInfo, readType apiv1.ReadType) (*Reader, error) {
	if info.GetFolder() {
		return nil, fmt.Errorf("open %s: %w", info.GetPath(), meta.ErrIsDirectory)
	}
	if !info.GetCompleted() {
		return nil, fmt.Errorf("open %s: file is still being written: %w", info.GetPath(), meta.ErrFailedPrecondition)
	}
	if readType == apiv1.ReadType_READ_TYPE_UNSPECIFIED {
		readType = c.cfg.ReadType
	}
	return &Reader{c: c, ctx: ctx, info: info, readType: readType}, nil
}

// Info is the file's metadata (as of open, or of the last refresh after a
// failed read).
func (r *Reader) Info() *apiv1.FileInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	length, bs := r.info.GetLength(), r.info.GetBlockSizeBytes()
	if r.pos >= length {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	idx, inb := r.pos/bs, r.pos%bs
	if r.prefetching() {
		n, err := r.pf.read(p)
		r.pos += int64(n)
		if err != nil {
			return n, fmt.Errorf("read %s at %d: %w", r.info.GetPath(), r.pos, err)
		}
		return n, nil
	}
	for attempt := 0; ; attempt++ {
		if r.src == nil || r.src.index != idx || !r.src.canRead(inb) {
			r.closeSource()
			// An uncached block is loaded whole into the local worker (the
			// next LoadAhead blocks too, in the background) and read through
			// the domain socket: a cold sequential read streams at the UFS's
			// parallel speed, and the file is local for its next reader.
			src, ok := r.loadLocal(idx)
			if !ok {
				var err error
				if src, err = r.open(idx, inb, -1); err != nil {
					return 0, err
				}
			}
			r.src = src
		}
		want := min(int64(len(p)), r.src.blockLen-inb)
		n, err := r.src.read(p[:want], inb)
		r.pos += int64(n)
		r.count(r.src.kind, n)
		if err == nil {
			return n, nil
		}
		r.sourceFailed(r.src, err)
		r.closeSource()
		if n > 0 {
			return n, nil // the next Read opens a new source from here
		}
		if attempt >= maxReadRetries || !r.retryable(err) {
			return 0, fmt.Errorf("read %s at %d: %w", r.info.GetPath(), r.pos, err)
		}
	}
}

// prefetching reports whether the next bytes come through the prefetcher
// (blocks cached on another node only), setting it up when they do.
func (r *Reader) prefetching() bool {
	bs := r.info.GetBlockSizeBytes()
	idx := r.pos / bs
	if !(r.pf != nil && len(r.pf.segs) > 0) && !((r.src == nil || r.src.index != idx) && r.remoteOnly(idx)) {
		return false
	}
	r.closeSource()
	if r.pf == nil {
		r.pf = &prefetcher{r: r}
	}
	return true
}

// WriteTo streams the rest of the file to w with large buffers; prefetched
// segments of remotely cached blocks go to w without another copy.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 4<<20)
	var total int64
	for {
		if r.pos < r.info.GetLength() && r.prefetching() {
			data, err := r.pf.head()
			if err != nil {
				return total, fmt.Errorf("read %s at %d: %w", r.info.GetPath(), r.pos, err)
			}
			n, werr := w.Write(data)
			r.pf.consume(n)
			r.pos += int64(n)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
			continue
		}
		if n, ok, err := r.sendLocal(w); ok {
			total += n
			if err != nil {
				return total, err
			}
			continue
		}
		// A Read opens the next block's source (loading it when cold);
		// from a local block, the rest is then sent by sendLocal.
		rbuf := buf
		if _, ok := w.(syscall.Conn); ok && !r.noSendfile && (r.src == nil || r.src.index != r.pos/r.info.GetBlockSizeBytes()) {
			rbuf = buf[:64<<10] // opens the block: sendLocal takes over if it is local
		}
		n, err := r.Read(rbuf)
		if n > 0 {
			if _, werr := w.Write(rbuf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Seek implements io.Seeker.
func (r *Reader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.info.GetLength()
	}
	if off < 0 {
		return r.pos, fmt.Errorf("seek %s to %d: %w", r.info.GetPath(), off, meta.ErrInvalidArgument)
	}
	r.pos = off
	return off, nil
}

// ReadAt implements io.ReaderAt and is safe for concurrent use. Local
// (short-circuit) blocks stay leased until Close, so random reads cost one
// pread; a remote stream is kept and resumed when the next ReadAt continues
// where the previous one ended.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	length, bs := r.Info().GetLength(), r.Info().GetBlockSizeBytes()
	total, retries := 0, 0
	for total < len(p) {
		pos := off + int64(total)
		if pos >= length {
			return total, io.EOF
		}
		idx, inb := pos/bs, pos%bs
		want := min(int64(len(p)-total), meta.BlockLength(length, bs, idx)-inb)
		src, err := r.takeSource(idx, inb, want)
		if err != nil {
			return total, err
		}
		n, err := io.ReadFull(&readerAt{src, inb}, p[total:total+int(want)])
		r.count(src.kind, n)
		total += n
		if err != nil {
			src.close()
			r.sourceFailed(src, err)
			if retries++; retries > maxReadRetries || !r.retryable(err) {
				return total, fmt.Errorf("read %s at %d: %w", r.Info().GetPath(), pos, err)
			}
			continue
		}
		r.putSource(src)
	}
	return total, nil
}

// takeSource returns a source for want bytes of block idx at inb: a leased
// local block, an idle stream positioned at inb, or a new one.
func (r *Reader) takeSource(idx, inb, want int64) (*source, error) {
	if s := r.hole(idx, inb); s != nil {
		return s, nil
	}
	r.mu.Lock()
	if s, ok := r.locals[idx]; ok {
		r.mu.Unlock()
		return s, nil
	}
	for i, s := range r.idle {
		if s.index == idx && s.next == inb && s.end-s.next >= want {
			r.idle = append(r.idle[:i], r.idle[i+1:]...)
			r.mu.Unlock()
			return s, nil
		}
	}
	r.mu.Unlock()
	if s, ok := r.loadLocal(idx); ok {
		return s, nil
	}
	// A miss read from offset 0 streams the whole block, so the worker
	// caches it in one pass; a miss elsewhere (readahead arriving out of
	// order) asks for just its range instead of the UFS to the block's end.
	length := int64(-1)
	if bi, _ := blockInfo(r.Info(), idx); inb != 0 && len(bi.GetLocations()) == 0 {
		length = want
	}
	return r.open(idx, inb, length)
}

// maxIdleStreams bounds the remote streams kept for resumption.
const maxIdleStreams = 4

func (r *Reader) putSource(s *source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.local != nil {
		if r.locals == nil {
			r.locals = map[int64]*source{}
		}
		if old, ok := r.locals[s.index]; ok && old != s {
			s.close() // a concurrent ReadAt leased it first
			return
		}
		r.locals[s.index] = s
		return
	}
	if s.next >= s.end {
		s.close()
		return
	}
	r.idle = append(r.idle, s)
	if len(r.idle) > maxIdleStreams {
		r.idle[0].close()
		r.idle = r.idle[1:]
	}
}

type readerAt struct {
	s   *source
	off int64
}

func (ra *readerAt) Read(p []byte) (int, error) {
	n, err := ra.s.read(p, ra.off)
	ra.off += int64(n)
	return n, err
}

func (r *Reader) count(kind string, n int) {
	switch kind {
	case kindLocal:
		r.Stats.ShortCircuit.Add(int64(n))
	case kindRemote:
		r.Stats.Remote.Add(int64(n))
	case kindUFS:
		r.Stats.UFS.Add(int64(n))
	}
}

func (r *Reader) closeSource() {
	if r.src != nil {
		r.src.close()
		r.src = nil
	}
}

// Close releases the reader's block leases and streams.
func (r *Reader) Close() error {
	r.closeSource()
	if r.pf != nil {
		r.pf.discard()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.locals {
		s.close()
	}
	for _, s := range r.idle {
		s.close()
	}
	r.locals, r.idle = nil, nil
	return nil
}

// open finds the best source for block idx from in-block offset inb:
// the local worker's domain socket, a worker caching it, and otherwise a
// worker that reads it from the UFS. After a failure with stale locations it
// refreshes the file's metadata and tries again. While no worker can serve
// the block (its only copies are on a worker that is restarting, or no
// worker is live) it keeps refreshing, bounded by the client's RetryTimeout
// (workerWait): a worker's rolling restart delays reads instead of
// failing them, and only a block still missing then is reported lost.
func (r *Reader) open(idx, inb, length int64) (*source, error) {
	src, err := r.tryOpen(idx, inb, length)
	if err == nil {
		return src, nil
	}
	wait := r.c.newWorkerWait()
	for refreshed := false; ; refreshed = true {
		// An unreachable under storage is not a worker coming back: waiting
		// for workers would only hold up the error.
		transient := (errors.Is(err, meta.ErrUnavailable) && !errors.Is(err, meta.ErrUFSUnavailable)) || errors.Is(err, meta.ErrDataLost)
		if refreshed && (!transient || !wait.next(r.ctx)) {
			return nil, err
		}
		old := r.Info()
		var info *apiv1.FileInfo
		var serr error
		if old.GetOrphan() {
			info, serr = r.c.StatusByID(r.ctx, old.GetFileId())
		} else {
			info, serr = r.c.GetStatus(r.ctx, old.GetPath())
		}
		if serr != nil || info.GetFileId() != old.GetFileId() {
			return nil, err
		}
		r.mu.Lock()
		r.info = info
		r.mu.Unlock()
		if src, err = r.tryOpen(idx, inb, length); err == nil {
			return src, nil
		}
	}
}

func blockInfo(info *apiv1.FileInfo, idx int64) (*apiv1.BlockInfo, int64) {
	bs := info.GetBlockSizeBytes()
	blen := meta.BlockLength(info.GetLength(), bs, idx)
	for _, fbi := range info.GetFileBlockInfos() {
		if fbi.GetOffset() == idx*bs {
			return fbi.GetBlockInfo(), blen
		}
	}
	return &apiv1.BlockInfo{BlockId: meta.BlockID(info.GetFileId(), idx), Length: blen}, blen
}

// ufsSource is where block idx of the file lies in the UFS.
func ufsSource(info *apiv1.FileInfo, idx int64) *apiv1.UfsBlockSource {
	return &apiv1.UfsBlockSource{
		UfsPath: info.GetUfsPath(), BlockOffset: idx * info.GetBlockSizeBytes(), MountId: info.GetMountId(),
		Persisted: info.GetPersistenceState() == apiv1.PersistenceState_PERSISTED, Fingerprint: info.GetUfsFingerprint(),
	}
}

// hole returns a source of zeros when block idx is a hole of the file
// (never written: no block anywhere), nil otherwise.
func (r *Reader) hole(idx, inb int64) *source {
	info := r.Info()
	if !meta.IsHole(info.GetHoles(), idx) {
		return nil
	}
	blen := meta.BlockLength(info.GetLength(), info.GetBlockSizeBytes(), idx)
	return &source{index: idx, blockLen: blen, end: blen, kind: kindHole, zero: true, next: inb}
}

func (r *Reader) tryOpen(idx, inb, length int64) (*source, error) {
	if s := r.hole(idx, inb); s != nil {
		return s, nil
	}
	info := r.Info()
	bi, blen := blockInfo(info, idx)
	bs := info.GetBlockSizeBytes()
	var errs []error
	node := r.c.cfg.Node
	if !r.c.cfg.DisableShortCircuit {
		for _, loc := range bi.GetLocations() {
			if loc.GetNode() != node || loc.GetDomainSocket() == "" {
				continue
			}
			sc, err := r.c.shortCircuit(r.ctx, loc.GetDomainSocket())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			octx, cancel := r.c.withDataTimeout(r.ctx)
			b, err := sc.Open(octx, bi.GetBlockId(), bs, r.readType == apiv1.ReadType_CACHE_PROMOTE, info.GetBlockToken())
			timedOut := octx.Err() != nil && r.ctx.Err() == nil
			cancel()
			if err != nil {
				if timedOut {
					err = errSilent(loc.GetDomainSocket(), r.c.cfg.DataTimeout)
					r.c.markSlow(loc.GetWorkerAddress())
				}
				if !errors.Is(err, meta.ErrNotFound) {
					r.c.dropShortCircuit(loc.GetDomainSocket())
				}
				errs = append(errs, err)
				continue
			}
			return &source{index: idx, blockLen: blen, end: blen, kind: kindLocal, local: b}, nil
		}
	}
	req := &apiv1.ReadBlockRequest{
		BlockId: bi.GetBlockId(), Offset: inb, Length: length, BlockLength: blen,
		BlockSizeBytes: bs, ReadType: r.readType, Ufs: ufsSource(info, idx), BlockToken: info.GetBlockToken(),
	}
	// Cached copies, the local node's first, workers that timed out last.
	locs := bi.GetLocations()
	ordered := make([]*apiv1.BlockLocation, 0, len(locs))
	var tried []string
	for _, pass := range []func(*apiv1.BlockLocation) bool{
		func(l *apiv1.BlockLocation) bool { return l.GetNode() == node && !r.c.isSlow(l.GetWorkerAddress()) },
		func(l *apiv1.BlockLocation) bool { return l.GetNode() != node && !r.c.isSlow(l.GetWorkerAddress()) },
		func(l *apiv1.BlockLocation) bool { return r.c.isSlow(l.GetWorkerAddress()) },
	} {
		for _, l := range locs {
			if pass(l) {
				ordered = append(ordered, l)
			}
		}
	}
	for _, loc := range ordered {
		s, err := r.remote(loc.GetDataAddress(), loc.GetWorkerAddress(), req, idx, blen, kindRemote)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, meta.ErrUnavailable) {
			r.c.markSlow(loc.GetWorkerAddress())
			tried = append(tried, loc.GetWorkerAddress())
		}
		errs = append(errs, err)
	}
	if !req.Ufs.Persisted {
		if len(errs) > 0 {
			// Copies are listed but none answered (a worker restarting, an
			// expired block token): lost for now, and the reasons say why.
			return nil, fmt.Errorf("block %d of %s: no worker could serve a cached copy and the file was never persisted to the UFS (written with %s): %w: %w",
				bi.GetBlockId(), info.GetPath(), info.GetWriteType(), meta.ErrDataLost, errors.Join(errs...))
		}
		return nil, fmt.Errorf("block %d of %s is lost: it is not cached on any worker and the file was never persisted to the UFS (written with %s): %w",
			bi.GetBlockId(), info.GetPath(), info.GetWriteType(), meta.ErrDataLost)
	}
	// Through a worker that reads the UFS; one that times out is replaced.
	for range maxReadRetries {
		w, err := r.c.pickWorker(r.ctx, bi.GetBlockId(), tried...)
		if err != nil {
			return nil, errors.Join(append(errs, err)...)
		}
		s, err := r.remote(w.GetDataAddress(), w.GetAddress(), req, idx, blen, kindUFS)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, meta.ErrUnavailable) || errors.Is(err, meta.ErrUFSUnavailable) || r.ctx.Err() != nil {
			break
		}
		r.c.markSlow(w.GetAddress())
		tried = append(tried, w.GetAddress())
	}
	return nil, errors.Join(errs...)
}

// remote reads from a worker's data port when it has one, else over gRPC.
func (r *Reader) remote(dataAddr, grpcAddr string, req *apiv1.ReadBlockRequest, idx, blen int64, kind string) (*source, error) {
	var s *source
	var err error
	if dataAddr != "" && !r.c.cfg.DisableDataPort {
		s, err = r.dataStream(dataAddr, req, idx, blen, kind)
	} else {
		s, err = r.stream(grpcAddr, req, idx, blen, kind)
	}
	if s != nil {
		s.worker = grpcAddr
	}
	return s, err
}

// stream opens a ReadBlock stream and waits for its first chunk, so a worker
// that lacks the block fails here and the next source can be tried.
func (r *Reader) stream(addr string, req *apiv1.ReadBlockRequest, idx, blen int64, kind string) (*source, error) {
	wc, err := r.c.workerConn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	st, err := wc.ReadBlock(ctx, req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("read block %d from worker %s: %w", req.GetBlockId(), addr, meta.FromStatus(err))
	}
	s := &source{index: idx, blockLen: blen, end: streamEnd(req, blen), kind: kind, stream: st, cancel: cancel, next: req.GetOffset(), chunk: &apiv1.DataChunk{}, c: r.c, worker: addr}
	timedOut, err := recvWithin(st, s.chunk, r.c.cfg.DataTimeout, cancel)
	if err != nil && !(errors.Is(err, io.EOF) && req.GetOffset() >= blen) {
		cancel()
		if timedOut {
			err = errSilent(addr, r.c.cfg.DataTimeout)
		}
		return nil, fmt.Errorf("read block %d from worker %s: %w", req.GetBlockId(), addr, meta.FromStatus(err))
	}
	s.buf = s.chunk.GetData()
	return s, nil
}

const (
	kindLocal  = "local"
	kindRemote = "remote"
	kindUFS    = "ufs"
	kindHole   = "hole" // zeros of a sparse file's hole: read from nowhere
)

// source is an open view of one block.
type source struct {
	index    int64
	blockLen int64
	end      int64 // in-block offset where the stream's bytes end
	kind     string
	zero     bool // a hole: reads zeros
	local    *shortcircuit.Block
	stream   apiv1.BlockWorker_ReadBlockClient
	cancel   context.CancelFunc
	next     int64 // in-block offset of buf[0] (streams are sequential)
	buf      []byte
	chunk    *apiv1.DataChunk // reused receive buffer; buf points into it
	worker   string           // gRPC address of the worker serving a remote source
	// Raw data-port reads.
	c         *Client
	conn      net.Conn
	connAddr  string
	remaining int64
}

func (s *source) canRead(inb int64) bool {
	return s.zero || s.local != nil || (inb == s.next && (s.stream != nil || s.conn != nil))
}

func (s *source) read(p []byte, inb int64) (int, error) {
	if s.zero {
		n := int(max(min(int64(len(p)), s.blockLen-inb), 0))
		clear(p[:n])
		s.next = inb + int64(n)
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
	if s.local != nil {
		n, err := s.local.File.ReadAt(p, s.local.Offset+inb)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		if err == io.EOF {
			err = fmt.Errorf("short read of cached block: %w", io.ErrUnexpectedEOF)
		}
		return n, err
	}
	if inb != s.next {
		return 0, fmt.Errorf("stream at %d, asked for %d: %w", s.next, inb, meta.ErrInvalidArgument)
	}
	if s.stream == nil {
		return s.readConn(p)
	}
	for len(s.buf) == 0 {
		timedOut, err := recvWithin(s.stream, s.chunk, s.c.cfg.DataTimeout, s.cancel)
		switch {
		case timedOut && err != nil:
			return 0, errSilent(s.worker, s.c.cfg.DataTimeout)
		case errors.Is(err, io.EOF):
			return 0, fmt.Errorf("block stream ended at %d of %d: %w", s.next, s.blockLen, io.ErrUnexpectedEOF)
		case err != nil:
			return 0, meta.FromStatus(err)
		}
		s.buf = s.chunk.GetData()
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	s.next += int64(n)
	return n, nil
}

func (s *source) close() {
	if s.local != nil {
		s.local.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.conn != nil {
		// Bytes of this block are still in flight: the connection cannot
		// be reused.
		s.conn.Close()
		s.conn = nil
	}
}

// streamEnd is where a ReadBlock stream's bytes end within the block.
func streamEnd(req *apiv1.ReadBlockRequest, blen int64) int64 {
	if req.GetLength() < 0 || req.GetOffset()+req.GetLength() > blen {
		return blen
	}
	return req.GetOffset() + req.GetLength()
}
