package s3

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// writer streams an object: bytes fill a part buffer; a full buffer is
// uploaded as a multipart part while the next one fills, at most
// UploadThreads parts in flight (then Write waits). An object smaller than
// one part is a single PUT on Close. Nothing is visible before Close.
type writer struct {
	f      *FS
	key    string
	ctx    context.Context // uploads; canceled by Abort
	cancel context.CancelFunc
	parent context.Context

	buf     *[]byte
	upload  string // multipart upload id, once started
	nparts  int32
	sem     chan struct{}
	wg      sync.WaitGroup // owns the part uploads
	mu      sync.Mutex
	parts   []types.CompletedPart
	err     error // first failed part
	done    bool
	written int64
}

var _ ufs.Writer = (*writer)(nil)

// Create implements ufs.UFS.
func (f *FS) Create(ctx context.Context, p string, _ uint32) (ufs.Writer, error) {
	k := key(p)
	if k == "" || k[len(k)-1] == '/' {
		return nil, fmt.Errorf("%w: create s3://%s/%s: not an object name", meta.ErrInvalidArgument, f.bucket, k)
	}
	w := &writer{f: f, key: k, parent: ctx, sem: make(chan struct{}, f.opts.UploadThreads)}
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return w, nil
}

// partSize grows with the part number so an object of any size fits S3's
// 10,000 parts: the base size up to part 1,000, then one more base size
// per further 1,000 parts (16 MiB base: up to ~880 GB).
func (w *writer) partSize() int64 {
	return w.f.opts.PartSize * (1 + int64(w.nparts)/1000)
}

func (w *writer) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if err := w.failed(); err != nil {
			return total, err
		}
		if w.buf == nil {
			w.buf = getBuf(&writePool, w.partSize())
			*w.buf = (*w.buf)[:0]
		}
		n := copy((*w.buf)[len(*w.buf):cap(*w.buf)], p)
		*w.buf = (*w.buf)[:len(*w.buf)+n]
		p = p[n:]
		total += n
		w.written += int64(n)
		if int64(len(*w.buf)) >= w.partSize() {
			if err := w.flushPart(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// flushPart hands the full buffer to an upload goroutine.
func (w *writer) flushPart() error {
	if w.upload == "" {
		id, err := w.f.startUpload(w.parent, w.key)
		if err != nil {
			return err
		}
		w.upload = id
	}
	if w.nparts >= maxParts {
		return fmt.Errorf("%w: s3://%s/%s exceeds %d parts", meta.ErrInvalidArgument, w.f.bucket, w.key, maxParts)
	}
	w.nparts++
	n, buf := w.nparts, w.buf
	w.buf = nil
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		writePool.Put(buf)
		return w.f.wrap(w.parent, "upload", w.key, w.ctx.Err())
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.sem }()
		etag, err := w.uploadPart(n, *buf)
		writePool.Put(buf)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			return
		}
		w.parts = append(w.parts, types.CompletedPart{ETag: etag, PartNumber: aws.Int32(n)})
	}()
	return nil
}

func (w *writer) uploadPart(n int32, data []byte) (*string, error) {
	wd := newWatchdog(w.ctx, w.f.opts.Timeout)
	defer wd.stop()
	out, err := w.f.client.UploadPart(wd.ctx, &s3.UploadPartInput{
		Bucket: &w.f.bucket, Key: &w.key, UploadId: &w.upload, PartNumber: aws.Int32(n),
		Body: &kickSeeker{bytes.NewReader(data), wd}, ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return nil, w.f.wrap(w.parent, fmt.Sprintf("upload part %d of", n), w.key, errOr(context.Cause(wd.ctx), err))
	}
	return out.ETag, nil
}

// kickSeeker is a part body that kicks the watchdog while the transport
// reads it; it stays seekable so the SDK can sign and retry it.
type kickSeeker struct {
	*bytes.Reader
	wd *watchdog
}

func (k *kickSeeker) Read(p []byte) (int, error) {
	n, err := k.Reader.Read(p)
	if n > 0 {
		k.wd.kick()
	}
	return n, err
}

// Close implements ufs.Writer: the object appears whole, or not at all.
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.upload == "" {
		defer w.cancel()
		var data []byte
		if w.buf != nil {
			data = *w.buf
			defer writePool.Put(w.buf)
			w.buf = nil
		}
		wd := newWatchdog(w.ctx, w.f.opts.Timeout)
		defer wd.stop()
		_, err := w.f.client.PutObject(wd.ctx, &s3.PutObjectInput{Bucket: &w.f.bucket, Key: &w.key,
			Body: &kickSeeker{bytes.NewReader(data), wd}, ContentLength: aws.Int64(int64(len(data)))})
		return w.f.wrap(w.parent, "write", w.key, errOr(context.Cause(wd.ctx), err))
	}
	if w.buf != nil && len(*w.buf) > 0 {
		if err := w.flushPart(); err != nil {
			w.abort()
			return err
		}
	}
	w.wg.Wait()
	if err := w.failed(); err != nil {
		w.abort()
		return err
	}
	sort.Slice(w.parts, func(i, j int) bool { return *w.parts[i].PartNumber < *w.parts[j].PartNumber })
	_, err := w.f.completeUpload(w.parent, w.key, w.upload, w.parts)
	w.cancel()
	if err != nil {
		w.f.abortUpload(w.parent, w.key, w.upload)
	}
	return err
}

// Abort implements ufs.Writer.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.abort()
	return nil
}

func (w *writer) abort() {
	w.cancel()
	w.wg.Wait()
	if w.buf != nil {
		writePool.Put(w.buf)
		w.buf = nil
	}
	if w.upload != "" {
		w.f.abortUpload(w.parent, w.key, w.upload)
	}
}

func (f *FS) startUpload(ctx context.Context, k string) (string, error) {
	octx, cancel := f.op(ctx)
	defer cancel()
	out, err := f.client.CreateMultipartUpload(octx, &s3.CreateMultipartUploadInput{Bucket: &f.bucket, Key: &k})
	if err != nil {
		return "", f.wrap(ctx, "start upload of", k, err)
	}
	return aws.ToString(out.UploadId), nil
}

func (f *FS) completeUpload(ctx context.Context, k, id string, parts []types.CompletedPart) (string, error) {
	octx, cancel := f.op(ctx)
	defer cancel()
	out, err := f.client.CompleteMultipartUpload(octx, &s3.CompleteMultipartUploadInput{Bucket: &f.bucket, Key: &k, UploadId: &id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return "", f.wrap(ctx, "complete upload of", k, err)
	}
	return trimETag(aws.ToString(out.ETag)), nil
}

// abortUpload discards an unfinished multipart upload, even when the
// caller's context is gone (best effort: a store's lifecycle rule for
// incomplete uploads catches what a crash leaves).
func (f *FS) abortUpload(ctx context.Context, k, id string) {
	octx, cancel := f.op(context.WithoutCancel(ctx))
	defer cancel()
	_, _ = f.client.AbortMultipartUpload(octx, &s3.AbortMultipartUploadInput{Bucket: &f.bucket, Key: &k, UploadId: &id})
}
