package job

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// exec runs one task; n is the bytes it moved.
func (w *Worker) exec(ctx context.Context, t *apiv1.JobTask) (n int64, err error) {
	switch t.GetType() {
	case apiv1.JobType_LOAD, apiv1.JobType_REPLICATE:
		return w.cacheBlock(ctx, t)
	case apiv1.JobType_FREE:
		_, err := w.fs.Free(ctx, t.GetPath(), false, t.GetForce())
		return 0, err
	case apiv1.JobType_PERSIST:
		return 0, w.persist(ctx, t)
	case apiv1.JobType_COPY, apiv1.JobType_MOVE:
		return w.copyFile(ctx, t)
	}
	return 0, fmt.Errorf("%w: task type %v", meta.ErrInvalidArgument, t.GetType())
}

// cacheBlock has the filesystem worker of this node cache the block.
func (w *Worker) cacheBlock(ctx context.Context, t *apiv1.JobTask) (int64, error) {
	if t.GetNode() != w.cfg.Node {
		return 0, fmt.Errorf("%w: task for node %s reached the job worker of %s", meta.ErrInvalidArgument, t.GetNode(), w.cfg.Node)
	}
	ws, err := w.fs.LiveWorkers(ctx)
	if err != nil {
		return 0, err
	}
	addr := ""
	for _, fw := range ws {
		if fw.GetNode() == w.cfg.Node {
			addr = fw.GetAddress()
			break
		}
	}
	if addr == "" {
		return 0, fmt.Errorf("cache block %d: %w: no live worker on node %s", t.GetBlock().GetBlockId(), meta.ErrUnavailable, w.cfg.Node)
	}
	if err := w.throttle(ctx, t.GetBlock().GetBlockLength()); err != nil {
		return 0, err
	}
	resp, err := w.fs.CacheBlockOn(ctx, addr, t.GetBlock())
	if err != nil {
		return 0, err
	}
	if resp.GetAlreadyCached() {
		return 0, nil
	}
	return t.GetBlock().GetBlockLength(), nil
}

// throttle waits until the bandwidth cap allows n more bytes.
func (w *Worker) throttle(ctx context.Context, n int64) error {
	if w.limiter == nil {
		return nil
	}
	for n > 0 {
		step := min(n, int64(w.limiter.Burst()))
		if err := w.limiter.WaitN(ctx, int(step)); err != nil {
			return fmt.Errorf("wait for bandwidth: %w", err)
		}
		n -= step
	}
	return nil
}

// persist schedules the file's persistence with the master (which keeps
// its temporary-object protocol) and waits until it is PERSISTED.
func (w *Worker) persist(ctx context.Context, t *apiv1.JobTask) error {
	timeout := time.Duration(t.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := w.fs.GetStatus(ctx, t.GetPath())
	if err != nil {
		return err
	}
	if info.GetPersistenceState() != apiv1.PersistenceState_PERSISTED {
		if err := w.fs.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: t.GetPath(), Persist: true}); err != nil {
			return err
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		switch info.GetPersistenceState() {
		case apiv1.PersistenceState_PERSISTED:
			return nil
		case apiv1.PersistenceState_LOST:
			return fmt.Errorf("persist %s: %w: a block was lost before it reached the UFS", t.GetPath(), meta.ErrDataLost)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("persist %s: %w: not in the UFS after %v; a file is written by a worker that holds all its blocks", t.GetPath(), meta.ErrUnavailable, timeout)
		case <-tick.C:
		}
		if info, err = w.fs.GetStatus(ctx, t.GetPath()); err != nil {
			return err
		}
	}
}

// copyFile copies t.Path to t.Dst, checks the destination's SHA-256
// against the bytes read, and for MOVE then deletes the source. A
// destination that already holds the same bytes (a task run again after a
// restart) counts as copied.
func (w *Worker) copyFile(ctx context.Context, t *apiv1.JobTask) (int64, error) {
	src, err := w.fs.OpenFile(ctx, t.GetPath(), apiv1.ReadType_NO_CACHE)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	info := src.Info()
	if d, err := w.fs.GetStatus(ctx, t.GetDst()); err == nil {
		if d.GetFolder() || !t.GetOverwrite() {
			same, err := w.sameContent(ctx, info, d)
			if err != nil {
				return 0, err
			}
			if !same {
				return 0, fmt.Errorf("copy %s to %s: %w (different content; set overwrite to replace it)", t.GetPath(), t.GetDst(), meta.ErrAlreadyExists)
			}
			return 0, w.finishMove(ctx, t)
		}
	} else if !errors.Is(err, meta.ErrNotFound) {
		return 0, err
	}
	dst, err := w.fs.Create(ctx, t.GetDst(), client.WriteOptions{WriteType: t.GetWriteType(), BlockSize: info.GetBlockSizeBytes(),
		Mode: info.GetMode(), Recursive: true, Overwrite: t.GetOverwrite()})
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", t.GetPath(), err)
	}
	h := sha256.New()
	n, err := io.Copy(dst, io.TeeReader(&throttledReader{ctx: ctx, r: src, w: w}, h))
	if err == nil && n != info.GetLength() {
		err = fmt.Errorf("%w: read %d bytes of %d", meta.ErrFailedPrecondition, n, info.GetLength())
	}
	if err != nil {
		dst.Abort()
		return n, fmt.Errorf("copy %s to %s: %w", t.GetPath(), t.GetDst(), err)
	}
	if err := dst.Close(); err != nil {
		return n, fmt.Errorf("copy %s to %s: %w", t.GetPath(), t.GetDst(), err)
	}
	got, err := w.checksum(ctx, t.GetDst())
	if err != nil {
		return n, fmt.Errorf("verify %s: %w", t.GetDst(), err)
	}
	if !bytes.Equal(got, h.Sum(nil)) {
		_ = w.fs.Delete(ctx, t.GetDst(), false, false)
		return n, fmt.Errorf("copy %s to %s: %w: checksum of the copy differs from the source's", t.GetPath(), t.GetDst(), meta.ErrDataLost)
	}
	return n, w.finishMove(ctx, t)
}

func (w *Worker) finishMove(ctx context.Context, t *apiv1.JobTask) error {
	if t.GetType() != apiv1.JobType_MOVE {
		return nil
	}
	if err := w.fs.Delete(ctx, t.GetPath(), false, false); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("delete moved source %s: %w", t.GetPath(), err)
	}
	return nil
}

func (w *Worker) sameContent(ctx context.Context, a, b *apiv1.FileInfo) (bool, error) {
	if b.GetFolder() || !b.GetCompleted() || a.GetLength() != b.GetLength() {
		return false, nil
	}
	sa, err := w.checksum(ctx, a.GetPath())
	if err != nil {
		return false, err
	}
	sb, err := w.checksum(ctx, b.GetPath())
	if err != nil {
		return false, err
	}
	return bytes.Equal(sa, sb), nil
}

// checksum is the SHA-256 of a file's bytes as Alcove serves them.
func (w *Worker) checksum(ctx context.Context, p string) ([]byte, error) {
	r, err := w.fs.OpenFile(ctx, p, apiv1.ReadType_NO_CACHE)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := r.WriteTo(h); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// throttledReader reads through the job worker's bandwidth cap.
type throttledReader struct {
	ctx context.Context
	r   io.Reader
	w   *Worker
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if t.w.limiter != nil && len(p) > t.w.limiter.Burst() {
		p = p[:t.w.limiter.Burst()]
	}
	n, err := t.r.Read(p)
	if n > 0 {
		if terr := t.w.throttle(t.ctx, int64(n)); terr != nil {
			return n, terr
		}
	}
	return n, err
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	for _, e := range []error{meta.ErrInvalidArgument, meta.ErrInvalidPath, meta.ErrFailedPrecondition, meta.ErrNotFound,
		meta.ErrAlreadyExists, meta.ErrPermission, meta.ErrIsDirectory, meta.ErrNotDirectory, meta.ErrDataLost} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
