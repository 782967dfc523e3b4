package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/metadata"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// chunkSize is the data message size on block streams.
const chunkSize = 1 << 20

// WriteOptions tune Create; zero values take the client's defaults.
type WriteOptions struct {
	WriteType apiv1.WriteType
	BlockSize int64
	Mode      uint32
	Recursive bool // create missing parent directories
	Overwrite bool // replace an existing file
	TTLMs     int64
	TTLAction apiv1.TtlAction
	// ExactMode takes Mode as given, 0 included (else 0 means 0644).
	ExactMode bool
	// Owner and Group of the new file (default: the client's).
	Owner, Group string
}

// Writer streams a new file to a worker. Close completes it; until then
// the file is invisible to readers as incomplete. Not safe for concurrent use.
type Writer struct {
	c      *Client
	info   *apiv1.FileInfo
	stream apiv1.BlockWorker_WriteFileClient
	cancel context.CancelFunc
	ctx    context.Context
	n      int64
	done   bool
	err    error
	resp   *apiv1.WriteFileResponse
	holes  []*apiv1.BlockRun // blocks skipped (Skip)
	ended  bool              // skipped to the end: nothing may follow
	keep   bool              // a failure leaves the file (WriteCreated)
}

// Create makes a file at path and returns a writer for its content.
func (c *Client) Create(ctx context.Context, path string, opts WriteOptions) (*Writer, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	// Pick the worker first: with none alive there is nothing to create
	// (and an existing file to overwrite stays); while the only workers
	// restart, wait for one.
	wait := c.newWorkerWait()
	w, err := c.pickWorkerWaiting(ctx, wait)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	info, err := c.CreateIncomplete(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	return c.writeCreated(ctx, info, opts.WriteType, w, wait, false)
}

// writeDefaults fills opts' zero values from the client's configuration.
func (c *Client) writeDefaults(opts *WriteOptions) error {
	if opts.WriteType == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		opts.WriteType = c.cfg.WriteType
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = c.cfg.BlockSize
	}
	if opts.Owner == "" {
		opts.Owner = c.cfg.Owner
	}
	if opts.Group == "" {
		opts.Group = c.cfg.Group
	}
	return meta.ValidateBlockSize(opts.BlockSize)
}

// CreateIncomplete makes a file at path without content: it stays
// incomplete (invisible to readers) until a writer from WriteCreated
// completes it, or it is removed. One master call (exactly once across
// a leader change: masterconn's request id). The block token it carries
// allows writing the file for the token's lifetime.
func (c *Client) CreateIncomplete(ctx context.Context, path string, opts WriteOptions) (*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	if err := c.writeDefaults(&opts); err != nil {
		return nil, err
	}
	var info *apiv1.FileInfo
	err = c.fs(ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.CreateFile(ctx, &apiv1.CreateFileRequest{
			Path: p, BlockSizeBytes: opts.BlockSize, Mode: opts.Mode, WriteType: opts.WriteType,
			Recursive: opts.Recursive, Overwrite: opts.Overwrite, TtlMs: opts.TTLMs, TtlAction: opts.TTLAction,
			ReplicationDurable: c.cfg.ReplicationDurable, Owner: opts.Owner, Group: opts.Group, ExactMode: opts.ExactMode,
		})
		info = r.GetFileInfo()
		return err
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

// WriteCreated returns a writer for the content of info, a file made by
// CreateIncomplete and not completed yet (info.Path is where it is now).
// A failure (here, or of the writer) leaves the file incomplete, for the
// caller to write again or remove: another writer of the same file
// replaces the blocks a failed one cached.
func (c *Client) WriteCreated(ctx context.Context, info *apiv1.FileInfo, wt apiv1.WriteType) (*Writer, error) {
	wait := c.newWorkerWait()
	w, err := c.pickWorkerWaiting(ctx, wait)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", info.GetPath(), err)
	}
	return c.writeCreated(ctx, info, wt, w, wait, true)
}

// writeCreated opens a writer of info on worker w (or another one that
// takes it, waiting on wait while none does); keep: a failure leaves the
// file (else it is removed).
func (c *Client) writeCreated(ctx context.Context, info *apiv1.FileInfo, wt apiv1.WriteType, w *apiv1.WorkerInfo, wait *workerWait, keep bool) (*Writer, error) {
	if wt == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		wt = c.cfg.WriteType
	}
	p := info.GetPath()
	hdr := &apiv1.WriteFileHeader{
		FileId: info.GetFileId(), Path: p, UfsPath: info.GetUfsPath(), BlockSizeBytes: info.GetBlockSizeBytes(),
		WriteType: wt, Mode: info.GetMode(), MountId: info.GetMountId(), Pinned: info.GetPinned(),
		BlockToken: info.GetBlockToken(),
	}
	// A worker that refuses the write (draining for a restart, not
	// registered yet) or does not answer is replaced by another one; when
	// every worker did, the write waits for one to come back.
	var tried []string
	var errs []error
	for attempt := 0; ; attempt++ {
		stream, cancel, err := c.openWrite(ctx, w.GetAddress(), hdr)
		if err == nil {
			return &Writer{c: c, info: info, stream: stream, cancel: cancel, ctx: ctx, keep: keep}, nil
		}
		errs = append(errs, err)
		tried = append(tried, w.GetAddress())
		if !errors.Is(err, meta.ErrUnavailable) || ctx.Err() != nil {
			break
		}
		w, err = c.pickWorker(ctx, -1, tried...)
		if attempt >= maxReadRetries || errors.Is(err, meta.ErrUnavailable) {
			// Every worker refused: start over once one may take it.
			if !wait.next(ctx) {
				break
			}
			attempt, tried, errs = -1, nil, errs[len(errs)-1:]
			w, err = c.pickWorkerWaiting(ctx, wait)
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
	}
	if !keep {
		c.abandon(ctx, p)
	}
	return nil, fmt.Errorf("write %s: %w", p, errors.Join(errs...))
}

// openWrite opens a WriteFile stream to the worker at addr, sends the
// header and waits (bounded) until the worker accepts the write.
func (c *Client) openWrite(ctx context.Context, addr string, hdr *apiv1.WriteFileHeader) (apiv1.BlockWorker_WriteFileClient, context.CancelFunc, error) {
	wc, err := c.workerConn(addr)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := wc.WriteFile(sctx)
	if err == nil {
		err = stream.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Header{Header: hdr}})
	}
	if err == nil {
		// Accepting may create the UFS file first: allow a few data timeouts.
		t := time.AfterFunc(3*c.cfg.DataTimeout, cancel)
		var md metadata.MD
		md, err = stream.Header()
		if md.Get(meta.WriteAcceptedHeader) == nil {
			if _, err = stream.CloseAndRecv(); err == nil {
				err = fmt.Errorf("%w: the worker ended the write without taking it", meta.ErrUnavailable)
			}
		}
		if !t.Stop() && sctx.Err() != nil {
			err = errSilent(addr, 3*c.cfg.DataTimeout)
			c.markSlow(addr)
		}
	}
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("open write stream to worker %s for %s: %w", addr, hdr.GetPath(), meta.FromStatus(err))
	}
	return stream, cancel, nil
}

// abandon removes an incomplete file after a failed write.
func (c *Client) abandon(ctx context.Context, p string) {
	_ = c.fs(context.WithoutCancel(ctx), func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		_, err := m.Delete(ctx, &apiv1.DeleteRequest{Path: p, AlcoveOnly: true})
		return err
	})
}

// Info is the file's metadata as created.
func (w *Writer) Info() *apiv1.FileInfo { return w.info }

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("write %s: %w", w.info.GetPath(), io.ErrClosedPipe)
	}
	if w.ended && len(p) > 0 {
		return 0, fmt.Errorf("%w: write %s after a skip to its end", meta.ErrInvalidArgument, w.info.GetPath())
	}
	written := 0
	for written < len(p) {
		end := min(len(p), written+chunkSize)
		if err := w.stream.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Data{Data: p[written:end]}}); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status says why.
				_, err = w.stream.CloseAndRecv()
			}
			w.fail(fmt.Errorf("write %s: %w", w.info.GetPath(), meta.FromStatus(err)))
			return written, w.err
		}
		w.n += int64(end - written)
		written = end
	}
	return written, nil
}

// Skip appends n bytes of zeros as a hole of the file: no block is
// written or cached (a sparse file takes no space for it). A hole starts
// at a block boundary and spans whole blocks, or the rest of the file
// (then nothing may follow).
func (w *Writer) Skip(n int64) error {
	if w.err != nil {
		return w.err
	}
	bs := w.info.GetBlockSizeBytes()
	if w.done || w.ended || n <= 0 || w.n%bs != 0 {
		return fmt.Errorf("%w: skip %d bytes of %s at offset %d: holes are whole blocks from a block boundary, or the end of the file",
			meta.ErrInvalidArgument, n, w.info.GetPath(), w.n)
	}
	if err := w.stream.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Skip{Skip: n}}); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = w.stream.CloseAndRecv()
		}
		w.fail(fmt.Errorf("skip in %s: %w", w.info.GetPath(), meta.FromStatus(err)))
		return w.err
	}
	for i := range meta.BlockCount(n, bs) {
		w.holes = meta.AddHole(w.holes, w.n/bs+i)
	}
	w.n += n
	w.ended = n%bs != 0
	return nil
}

// ReadFrom copies r into the file with large chunks.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, chunkSize)
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			w.fail(fmt.Errorf("read source for %s: %w", w.info.GetPath(), err))
			return total, w.err
		}
	}
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	if w.keep {
		w.Cancel()
		return
	}
	w.Abort()
}

// Cancel ends the stream without completing the file and without removing
// it: it stays incomplete (a later writer of the same file replaces the
// blocks this one cached).
func (w *Writer) Cancel() {
	if w.done {
		return
	}
	if w.err == nil {
		w.err = fmt.Errorf("write %s: %w", w.info.GetPath(), context.Canceled)
	}
	w.done = true
	w.cancel()
}

// Abort discards the file.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.cancel()
	w.c.abandon(w.ctx, w.info.GetPath())
}

// Close finishes the stream and completes the file at the master. The file
// is durable per its write type when Close returns nil.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return nil
	}
	resp, err := w.stream.CloseAndRecv()
	if err != nil {
		w.fail(fmt.Errorf("finish writing %s: %w", w.info.GetPath(), meta.FromStatus(err)))
		return w.err
	}
	if resp.GetLength() != w.n {
		w.fail(fmt.Errorf("finish writing %s: worker stored %d bytes, client sent %d: %w", w.info.GetPath(), resp.GetLength(), w.n, meta.ErrAborted))
		return w.err
	}
	w.resp = resp
	var info *apiv1.FileInfo
	err = w.c.fs(w.ctx, func(ctx context.Context, m apiv1.FileSystemMasterClient) error {
		r, err := m.CompleteFile(ctx, &apiv1.CompleteFileRequest{
			Path: w.info.GetPath(), FileId: w.info.GetFileId(), Length: w.n,
			Persisted: resp.GetPersisted(), UfsMtimeMs: resp.GetUfsMtimeMs(), UfsFingerprint: resp.GetUfsFingerprint(), Holes: w.holes,
		})
		info = r.GetFileInfo()
		return err
	})
	if err != nil {
		w.fail(fmt.Errorf("complete %s: %w", w.info.GetPath(), err))
		return w.err
	}
	w.done = true
	w.cancel()
	w.info = info
	return nil
}
