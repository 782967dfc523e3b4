package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/ufs"
)

// blockService implements the BlockWorker gRPC service.
type blockService struct {
	apiv1.UnimplementedBlockWorkerServer
	w *Worker
}

var _ apiv1.BlockWorkerServer = (*blockService)(nil)

// ReadBlock implements apiv1.BlockWorkerServer.
func (s *blockService) ReadBlock(req *apiv1.ReadBlockRequest, stream grpc.ServerStreamingServer[apiv1.DataChunk]) error {
	return meta.ToStatus(s.w.readBlock(stream.Context(), req, grpcSink{stream}))
}

// blockSink receives the bytes of one block read: a gRPC stream, or a
// connection of the raw data port.
type blockSink interface {
	// start is called once the byte count is known, before any data.
	start(n int64) error
	// sendCached sends n bytes of the cache file f from off; release ends
	// the block's lease once nothing refers to those bytes any more.
	sendCached(f *os.File, off, n, chunk int64, release func()) error
	// sendChunk sends a chunkPool buffer and takes ownership of it.
	sendChunk(buf *[]byte) error
}

type grpcSink struct{ stream grpc.ServerStream }

func (grpcSink) start(int64) error { return nil }

func (g grpcSink) sendCached(f *os.File, off, n, chunk int64, release func()) error {
	return sendMapped(g.stream, f, off, n, chunk, release)
}

func (g grpcSink) sendChunk(buf *[]byte) error {
	if err := g.stream.SendMsg(&rawChunk{buf: buf}); err != nil {
		return fmt.Errorf("send chunk: %w", err)
	}
	return nil
}

func chunkSize(req int32) int64 {
	switch {
	case req <= 0:
		return DefaultChunkSize
	case req < 64<<10:
		return 64 << 10
	case req > maxChunkSize:
		return maxChunkSize
	}
	return int64(req)
}

func (w *Worker) readBlock(ctx context.Context, req *apiv1.ReadBlockRequest, sink blockSink) error {
	id, off := req.GetBlockId(), req.GetOffset()
	if off < 0 {
		return fmt.Errorf("read block %d: %w: negative offset %d", id, meta.ErrInvalidArgument, off)
	}
	if err := w.authorize(req.GetBlockToken(), id, security.AccessRead); err != nil {
		return fmt.Errorf("read %w", err)
	}
	chunk := chunkSize(req.GetChunkSize())
	if req.GetReadType() == apiv1.ReadType_CACHE_PROMOTE {
		if _, err := w.store.Promote(id); err != nil && !errors.Is(err, meta.ErrNotFound) {
			w.log.Error(err, "promote block", "blockID", id)
		}
	}
	if h, err := w.store.OpenBlock(id); err == nil && req.GetBlockLength() > 0 && h.Length != req.GetBlockLength() {
		// Defense in depth (the master refuses such blocks at registration):
		// a cached block that does not fit the file the client reads is
		// never served.
		w.log.Info("cached block does not fit the file read; dropping it", "blockID", id, "cached", h.Length, "want", req.GetBlockLength())
		h.Close()
		w.store.Remove(id)
	} else if err == nil {
		defer h.File.Close() // the mapping outlives the fd
		n, err := rangeLen(id, off, req.GetLength(), h.Length)
		if err != nil {
			h.Release()
			return err
		}
		w.metrics.cacheHits.Inc()
		if err := sink.start(n); err != nil || n == 0 {
			h.Release()
			return err
		}
		if err := sink.sendCached(h.File, h.Offset+off, n, chunk, h.Release); err != nil {
			return fmt.Errorf("read block %d from cache: %w", id, err)
		}
		w.metrics.bytesReadRemote.Add(float64(n))
		return nil
	}
	w.metrics.cacheMisses.Inc()
	src := req.GetUfs()
	if src == nil || !src.GetPersisted() {
		return fmt.Errorf("read block %d: %w: block %d is not cached on any worker and its file was never persisted", id, meta.ErrDataLost, id)
	}
	blen := req.GetBlockLength()
	if blen <= 0 || req.GetBlockSizeBytes() <= 0 {
		return fmt.Errorf("read block %d: %w: a cache miss needs block_length and block_size_bytes", id, meta.ErrInvalidArgument)
	}
	if err := w.authorizeUFS(req.GetBlockToken(), id, req.GetBlockSizeBytes(), src); err != nil {
		return fmt.Errorf("read %w", err)
	}
	n, err := rangeLen(id, off, req.GetLength(), blen)
	if err != nil {
		return err
	}
	// Open the UFS range before answering, so that a store that refuses
	// (changed object, no permission, unreachable) is an error the caller
	// sees with its reason, not a stream cut short.
	r, p, err := w.openUFS(ctx, src, off, n)
	if err != nil {
		return fmt.Errorf("read block %d from UFS: %w", id, err)
	}
	defer r.Close()
	cacheable := req.GetReadType() != apiv1.ReadType_NO_CACHE
	task := cacheTask{blockID: id, length: blen, blockSize: req.GetBlockSizeBytes(), src: src}
	var tee *blockstore.Writer
	if cacheable && off == 0 && n == blen {
		if tee, err = w.store.CreateBlock(id, task.blockSize, blen); err != nil {
			w.log.V(2).Info("serve from UFS without caching", "blockID", id, "reason", err)
			tee = nil
		}
	} else if cacheable {
		w.cacher.submit(task)
	}
	if err := sink.start(n); err != nil {
		if tee != nil {
			tee.Abort()
		}
		return err
	}
	if err := w.copyUFS(sink, r, p, n, chunk, tee); err != nil {
		if tee != nil {
			tee.Abort()
		}
		return fmt.Errorf("read block %d from UFS: %w", id, err)
	}
	if tee != nil {
		w.commitCached(ctx, tee)
	}
	return nil
}

// commitCached commits a block written into the cache and tells the master.
func (w *Worker) commitCached(ctx context.Context, bw *blockstore.Writer) {
	info, err := bw.Commit()
	if err != nil {
		w.log.Error(err, "commit cached block")
		return
	}
	w.metrics.bytesWrittenCache.Add(float64(info.Length))
	if _, err := w.commitBlock(ctx, info, false); err != nil {
		// The next heartbeat reports the block too.
		w.log.V(1).Info("report cached block to the master", "blockID", info.ID, "err", err)
	}
}

// rangeLen resolves a requested [off, off+length) within a block of blen bytes.
func rangeLen(id, off, length, blen int64) (int64, error) {
	if off > blen {
		return 0, fmt.Errorf("read block %d: %w: offset %d beyond block length %d", id, meta.ErrInvalidArgument, off, blen)
	}
	if length < 0 || off+length > blen {
		return blen - off, nil
	}
	return length, nil
}

// openUFS opens n bytes of a block from off in the UFS (refusing a
// changed object when the block carries its fingerprint).
func (w *Worker) openUFS(ctx context.Context, src *apiv1.UfsBlockSource, off, n int64) (io.ReadCloser, string, error) {
	fs, p, err := w.resolveUFS(ctx, src.GetUfsPath(), src.GetMountId())
	if err != nil {
		return nil, "", err
	}
	r, err := ufs.OpenRangeMatching(ctx, fs, p, src.GetBlockOffset()+off, n, src.GetFingerprint())
	if err != nil {
		return nil, "", err
	}
	return r, p, nil
}

// copyUFS streams n bytes from r (the UFS file p) to the sink, copying
// every chunk into tee first when caching.
func (w *Worker) copyUFS(sink blockSink, r io.Reader, p string, n, chunk int64, tee *blockstore.Writer) error {
	for n > 0 {
		size := min(chunk, n)
		buf := chunkPool.Get(int(size))
		if _, err := io.ReadFull(r, *buf); err != nil {
			chunkPool.Put(buf)
			return fmt.Errorf("read %s: %w (the UFS file is shorter than its metadata says)", p, err)
		}
		w.metrics.bytesReadUFS.Add(float64(size))
		if tee != nil {
			if _, err := tee.Write(*buf); err != nil {
				chunkPool.Put(buf)
				return err
			}
		}
		if err := sink.sendChunk(buf); err != nil {
			return err
		}
		n -= size
	}
	return nil
}
