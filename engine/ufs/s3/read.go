package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/alcove-io/alcove/engine/meta"
)

// watchdog cancels a transfer's context when it makes no progress for d:
// a stalled connection fails in bounded time however long the transfer.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func newWatchdog(parent context.Context, d time.Duration) *watchdog {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{ctx: ctx, cancel: cancel, d: d}
	w.timer = time.AfterFunc(d, func() { cancel(errTimeout) })
	return w
}

func (w *watchdog) kick() { w.timer.Reset(w.d) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// kickReader reads through a watchdog, kicking it on every byte received.
type kickReader struct {
	r  io.Reader
	wd *watchdog
}

func (k kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.wd.kick()
	}
	return n, err
}

// OpenRange implements ufs.UFS.
func (f *FS) OpenRange(ctx context.Context, p string, off, length int64) (io.ReadCloser, error) {
	return f.OpenRangeMatching(ctx, p, off, length, "")
}

// OpenRangeMatching implements ufs.MatchingOpener: with etag set, every GET
// carries If-Match, so a changed object fails the read instead of mixing
// versions. Ranges longer than one part are fetched as parallel ranged GETs
// (alluxio.underfs.s3.read.threads.max of alluxio.underfs.s3.read.part.size)
// and delivered in order.
func (f *FS) OpenRangeMatching(ctx context.Context, p string, off, length int64, etag string) (io.ReadCloser, error) {
	k := key(p)
	if off < 0 {
		return nil, fmt.Errorf("%w: read %s at negative offset %d", meta.ErrInvalidArgument, p, off)
	}
	if length < 0 {
		st, err := f.head(ctx, k, etag)
		if err != nil {
			return nil, err
		}
		length = max(0, st.Length-off)
		etag = st.Fingerprint
	}
	if length == 0 {
		return io.NopCloser(eofReader{}), nil
	}
	rr := &rangeReader{f: f, key: k, off: off, end: off + length, etag: etag, parent: ctx}
	rr.ctx, rr.cancel = context.WithCancel(ctx)
	if length <= f.opts.ReadPartSize || f.opts.ReadThreads <= 1 {
		if err := rr.openStream(); err != nil {
			rr.Close()
			return nil, err
		}
		return rr, nil
	}
	rr.fill()
	// Open means the first part arrived: a refusal (changed object, no
	// permission, store unreachable) surfaces here, with its reason.
	select {
	case <-rr.queue[0].done:
		if err := rr.queue[0].err; err != nil {
			rr.Close()
			return nil, err
		}
	case <-ctx.Done():
		rr.Close()
		return nil, f.wrap(ctx, "read", k, ctx.Err())
	}
	return rr, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// rangeReader serves [off, end) of one object: either one streamed GET, or
// parts fetched ahead by up to ReadThreads goroutines, which it owns: Close
// cancels and joins them.
type rangeReader struct {
	f        *FS
	key      string
	off, end int64 // next part to schedule starts at off
	etag     string
	parent   context.Context // the caller's: its end is the caller's error
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// streamed mode
	body io.ReadCloser
	wd   *watchdog

	// parts mode: fetched in order of queue
	etagMu sync.Mutex
	queue  []*part
	cur    []byte
	held   *[]byte // backs cur
}

type part struct {
	off, n int64
	done   chan struct{}
	buf    *[]byte
	err    error
}

// Part buffers are recycled, reads and writes apart (their sizes differ).
var readPool, writePool sync.Pool

func getBuf(pool *sync.Pool, n int64) *[]byte {
	if b, ok := pool.Get().(*[]byte); ok && int64(cap(*b)) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

func (r *rangeReader) openStream() error {
	r.wd = newWatchdog(r.ctx, r.f.opts.Timeout)
	out, err := r.f.client.GetObject(r.wd.ctx, r.getInput(r.off, r.end-r.off))
	if err != nil {
		r.wd.stop()
		return r.f.wrap(r.parent, "read", r.key, err)
	}
	r.wd.kick()
	r.body = out.Body
	return nil
}

func (r *rangeReader) getInput(off, n int64) *s3.GetObjectInput {
	in := &s3.GetObjectInput{Bucket: &r.f.bucket, Key: &r.key, Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))}
	r.etagMu.Lock()
	if r.etag != "" {
		in.IfMatch = aws.String(`"` + r.etag + `"`)
	}
	r.etagMu.Unlock()
	return in
}

// fill schedules parts until ReadThreads are queued or the range is covered.
func (r *rangeReader) fill() {
	for len(r.queue) < r.f.opts.ReadThreads && r.off < r.end {
		n := min(r.f.opts.ReadPartSize, r.end-r.off)
		pt := &part{off: r.off, n: n, done: make(chan struct{})}
		r.off += n
		r.queue = append(r.queue, pt)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(pt.done)
			pt.buf, pt.err = r.fetch(pt.off, pt.n)
		}()
	}
}

// fetch reads one part whole, retrying a transfer that broke part way.
func (r *rangeReader) fetch(off, n int64) (*[]byte, error) {
	buf := getBuf(&readPool, n)
	var err error
	start := time.Now()
	for attempt := range r.f.opts.MaxAttempts {
		if attempt > 0 {
			if time.Since(start) >= r.f.opts.Timeout {
				break // retries stay within one timeout, like a metadata call
			}
			// Full jitter, as the SDK's retryer does for whole requests.
			d := time.Duration(rand.Int64N(int64(min(100*time.Millisecond<<attempt, 2*time.Second))))
			select {
			case <-r.ctx.Done():
				readPool.Put(buf)
				return nil, r.f.wrap(r.parent, "read", r.key, r.ctx.Err())
			case <-time.After(d):
			}
		}
		if err = r.fetchOnce(off, *buf); err == nil {
			return buf, nil
		}
		if !errors.Is(err, meta.ErrUnavailable) || r.ctx.Err() != nil {
			break // not transient, or the reader is closed
		}
	}
	readPool.Put(buf)
	return nil, err
}

func (r *rangeReader) fetchOnce(off int64, buf []byte) error {
	wd := newWatchdog(r.ctx, r.f.opts.Timeout)
	defer wd.stop()
	out, err := r.f.client.GetObject(wd.ctx, r.getInput(off, int64(len(buf))))
	if err != nil {
		return r.f.wrap(r.parent, "read", r.key, errOr(context.Cause(wd.ctx), err))
	}
	defer out.Body.Close()
	if out.ETag != nil {
		r.etagMu.Lock()
		if r.etag == "" {
			r.etag = trimETag(*out.ETag) // later parts must come from the same version
		}
		r.etagMu.Unlock()
	}
	wd.kick()
	got, err := io.ReadFull(kickReader{out.Body, wd}, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("read s3://%s/%s: %w: object ended after %d of %d bytes at offset %d (changed in S3? sync its metadata)",
			r.f.bucket, r.key, meta.ErrFailedPrecondition, got, len(buf), off)
	case err != nil:
		return r.f.wrap(r.parent, "read", r.key, errOr(context.Cause(wd.ctx), err))
	}
	return nil
}

// errOr prefers the watchdog's cause (a timeout) over the error it produced.
func errOr(cause, err error) error {
	if errors.Is(cause, errTimeout) {
		return fmt.Errorf("%w: %v", errTimeout, err)
	}
	return err
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if r.body != nil {
		n, err := r.body.Read(p)
		if n > 0 {
			r.wd.kick()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			err = r.f.wrap(r.parent, "read", r.key, errOr(context.Cause(r.wd.ctx), err))
		}
		return n, err
	}
	for len(r.cur) == 0 {
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next waits for the part at the head of the queue and makes it cur;
// io.EOF when the range is done.
func (r *rangeReader) next() error {
	if len(r.queue) == 0 {
		return io.EOF
	}
	pt := r.queue[0]
	select {
	case <-pt.done:
	case <-r.ctx.Done():
		return r.f.wrap(r.parent, "read", r.key, r.ctx.Err())
	}
	if pt.err != nil {
		return pt.err
	}
	r.queue = r.queue[1:]
	r.cur = *pt.buf
	r.release(pt) // the buffer returns to the pool once consumed
	r.fill()
	return nil
}

// WriteTo hands each part to w straight from the buffer it was received
// into, in writes of a whole part: a block loaded into the worker's cache
// is not copied through another buffer first, and the cache file gets
// large aligned writes (a write smaller than a huge page makes tmpfs zero
// the rest of the page only to overwrite it with the next write).
func (r *rangeReader) WriteTo(w io.Writer) (int64, error) {
	if r.body != nil {
		buf := getBuf(&readPool, 1<<20)
		defer readPool.Put(buf)
		return io.CopyBuffer(w, struct{ io.Reader }{r}, *buf)
	}
	var total int64
	for {
		if len(r.cur) > 0 {
			n, err := w.Write(r.cur)
			total += int64(n)
			r.cur = r.cur[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if err := r.next(); errors.Is(err, io.EOF) {
			return total, nil
		} else if err != nil {
			return total, err
		}
	}
}

// release remembers the buffer being consumed; the previous one goes back
// to the pool.
func (r *rangeReader) release(pt *part) {
	if r.held != nil {
		readPool.Put(r.held)
	}
	r.held = pt.buf
}

// Close cancels outstanding GETs and waits for them.
func (r *rangeReader) Close() error {
	r.cancel()
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	if r.wd != nil {
		r.wd.stop()
	}
	r.wg.Wait()
	for _, pt := range r.queue {
		if pt.buf != nil {
			readPool.Put(pt.buf)
		}
	}
	r.queue, r.cur = nil, nil
	if r.held != nil {
		readPool.Put(r.held)
		r.held = nil
	}
	return nil
}
