package worker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// WriteFile implements apiv1.BlockWorkerServer.
func (s *blockService) WriteFile(stream grpc.ClientStreamingServer[apiv1.WriteFileRequest, apiv1.WriteFileResponse]) error {
	resp, err := s.w.writeFile(stream.Context(), stream)
	if err != nil {
		return meta.ToStatus(err)
	}
	return stream.SendAndClose(resp)
}

// fileWriter splits a file into blocks, caching and/or writing the UFS.
type fileWriter struct {
	w      *Worker
	h      *apiv1.WriteFileHeader
	ufsW   ufs.Writer
	ufsQ   *ufsPipe // writes ufsW beside the cache
	ufsFS  ufs.UFS
	ufsP   string
	cache  bool // still caching (CACHE_THROUGH stops when the cache is full)
	cur    *blockstore.Writer
	blocks []*apiv1.WorkerBlock
	length int64
	ended  bool // a skip to the end of the file came: nothing may follow
}

func (w *Worker) writeFile(ctx context.Context, stream grpc.ClientStreamingServer[apiv1.WriteFileRequest, apiv1.WriteFileResponse]) (*apiv1.WriteFileResponse, error) {
	first, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("write file: receive header: %w", err)
	}
	h := first.GetHeader()
	if err := validateHeader(h); err != nil {
		return nil, err
	}
	if err := w.authorizeWrite(h); err != nil {
		return nil, err
	}
	if !w.work.enter() {
		return nil, errDraining("write file " + h.GetPath())
	}
	defer w.work.leave()
	fw := &fileWriter{w: w, h: h, cache: meta.Caches(h.GetWriteType())}
	if fw.cache && w.ID() == 0 {
		return nil, fmt.Errorf("write file %s: %w: worker not registered with the master yet", h.GetPath(), meta.ErrUnavailable)
	}
	if err := fw.open(ctx); err != nil {
		return nil, err
	}
	// Tell the client the write is taken: a refusal (draining, not
	// registered) reaches it before it sends data, so it can go to
	// another worker.
	if err := stream.SendHeader(metadata.Pairs(meta.WriteAcceptedHeader, "1")); err != nil {
		fw.abort()
		return nil, fmt.Errorf("write file %s: accept: %w", h.GetPath(), err)
	}
	resp, err := fw.copy(ctx, stream)
	if err != nil {
		fw.abort()
		return nil, fmt.Errorf("write file %s: %w", h.GetPath(), err)
	}
	return resp, nil
}

func validateHeader(h *apiv1.WriteFileHeader) error {
	if h == nil {
		return fmt.Errorf("write file: %w: the first message must be the header", meta.ErrInvalidArgument)
	}
	if h.GetFileId() <= 0 {
		return fmt.Errorf("write file %s: %w: file id %d", h.GetPath(), meta.ErrInvalidArgument, h.GetFileId())
	}
	if err := meta.ValidateBlockSize(h.GetBlockSizeBytes()); err != nil {
		return fmt.Errorf("write file %s: %w", h.GetPath(), err)
	}
	switch h.GetWriteType() {
	case apiv1.WriteType_MUST_CACHE, apiv1.WriteType_ASYNC_THROUGH, apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_THROUGH:
	default:
		return fmt.Errorf("write file %s: %w: write type %v", h.GetPath(), meta.ErrInvalidArgument, h.GetWriteType())
	}
	if meta.WritesUfsSync(h.GetWriteType()) && h.GetUfsPath() == "" {
		return fmt.Errorf("write file %s: %w: write type %v needs a UFS path", h.GetPath(), meta.ErrInvalidArgument, h.GetWriteType())
	}
	return nil
}

func (fw *fileWriter) open(ctx context.Context) error {
	h := fw.h
	if fw.cache {
		if h.GetPinned() {
			fw.w.store.Pin(h.GetFileId())
		}
		if !meta.WritesUfsSync(h.GetWriteType()) {
			fw.w.store.MarkUnpersisted(h.GetFileId(), false)
		}
	}
	if !meta.WritesUfsSync(h.GetWriteType()) {
		return nil
	}
	fs, p, err := fw.w.resolveUFS(ctx, h.GetUfsPath(), h.GetMountId())
	if err != nil {
		return fmt.Errorf("write file %s: %w", h.GetPath(), err)
	}
	if fw.ufsW, err = fs.Create(ctx, p, h.GetMode()); err != nil {
		return fmt.Errorf("write file %s: %w", h.GetPath(), err)
	}
	fw.ufsFS, fw.ufsP = fs, p
	fw.ufsQ = newUFSPipe(fw.ufsW, fw.w.metrics.bytesWrittenUFS)
	return nil
}

func (fw *fileWriter) copy(ctx context.Context, stream grpc.ClientStreamingServer[apiv1.WriteFileRequest, apiv1.WriteFileResponse]) (*apiv1.WriteFileResponse, error) {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("receive data: %w", err)
		}
		if fw.ended {
			return nil, fmt.Errorf("%w: data after a skip to the end of the file", meta.ErrInvalidArgument)
		}
		switch v := req.GetValue().(type) {
		case *apiv1.WriteFileRequest_Data:
			err = fw.write(ctx, v.Data)
		case *apiv1.WriteFileRequest_Skip:
			err = fw.skip(v.Skip)
		default:
			err = fmt.Errorf("%w: a second header", meta.ErrInvalidArgument)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := fw.finishBlock(ctx); err != nil {
		return nil, err
	}
	resp := &apiv1.WriteFileResponse{Length: fw.length, Blocks: fw.blocks}
	if fw.ufsW != nil {
		if err := fw.ufsQ.end(); err != nil {
			return nil, err
		}
		err := fw.ufsW.Close()
		fw.ufsW = nil
		if err != nil {
			return nil, fmt.Errorf("commit UFS file: %w", err)
		}
		resp.Persisted = true
		if st, err := fw.ufsFS.Stat(ctx, fw.ufsP); err == nil {
			resp.UfsMtimeMs, resp.UfsFingerprint = st.ModTime.UnixMilli(), st.Fingerprint
		}
	}
	return resp, nil
}

func (fw *fileWriter) write(ctx context.Context, p []byte) error {
	if fw.ufsW != nil {
		if err := fw.ufsQ.send(ufsChunk{data: p}); err != nil {
			return err
		}
	}
	bs := fw.h.GetBlockSizeBytes()
	for len(p) > 0 {
		if fw.cache && fw.cur == nil {
			if err := fw.openBlock(ctx); err != nil {
				return err
			}
		}
		inBlock := fw.length % bs
		n := min(int64(len(p)), bs-inBlock)
		if fw.cur != nil {
			if _, err := fw.cur.Write(p[:n]); err != nil {
				return err
			}
			fw.w.metrics.bytesWrittenCache.Add(float64(n))
		}
		fw.length += n
		p = p[n:]
		if fw.length%bs == 0 {
			if err := fw.finishBlock(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// skip leaves n bytes of zeros as a hole: whole blocks from a block
// boundary (or the rest of the file), never cached; the UFS copy gets a
// sparse region (or zeros).
func (fw *fileWriter) skip(n int64) error {
	bs := fw.h.GetBlockSizeBytes()
	if n <= 0 || fw.length%bs != 0 {
		return fmt.Errorf("%w: skip of %d bytes at offset %d: holes are whole blocks from a block boundary", meta.ErrInvalidArgument, n, fw.length)
	}
	if fw.ufsW != nil {
		if err := fw.ufsQ.send(ufsChunk{skip: n}); err != nil {
			return err
		}
	}
	fw.length += n
	fw.ended = n%bs != 0
	return nil
}

func (fw *fileWriter) openBlock(ctx context.Context) error {
	id := meta.BlockID(fw.h.GetFileId(), fw.length/fw.h.GetBlockSizeBytes())
	bw, err := fw.w.store.CreateBlock(id, fw.h.GetBlockSizeBytes(), 0)
	for try := 0; errors.Is(err, meta.ErrAlreadyExists) && try < 3; try++ {
		// Left by an earlier attempt of this write, or still being
		// written by one its client canceled (a new file's stream that
		// broke): doom it, wait until that writer ends, then replace it.
		fw.w.store.Remove(id)
		if _, werr := fw.w.store.WaitBlock(ctx, id); werr != nil {
			return werr
		}
		fw.w.store.Remove(id)
		bw, err = fw.w.store.CreateBlock(id, fw.h.GetBlockSizeBytes(), 0)
	}
	if errors.Is(err, meta.ErrNoSpace) && fw.h.GetWriteType() == apiv1.WriteType_CACHE_THROUGH {
		fw.w.log.V(1).Info("cache full: writing the rest of the file to the UFS only", "path", fw.h.GetPath(), "blockID", id)
		fw.cache = false
		return nil
	}
	if err != nil {
		return err
	}
	fw.cur = bw
	return nil
}

// finishBlock commits the current block (if any bytes) and reports it.
func (fw *fileWriter) finishBlock(ctx context.Context) error {
	bw := fw.cur
	if bw == nil {
		return nil
	}
	fw.cur = nil
	if bw.Written() == 0 {
		return bw.Abort()
	}
	info, err := bw.Commit()
	if err != nil {
		return err
	}
	fw.blocks = append(fw.blocks, &apiv1.WorkerBlock{BlockId: info.ID, Length: info.Length, Tier: info.Tier})
	async := fw.h.GetWriteType() == apiv1.WriteType_ASYNC_THROUGH
	resp, err := fw.w.commitBlock(ctx, info, async)
	if err != nil {
		return fmt.Errorf("commit block %d to the master: %w", info.ID, err)
	}
	if !meta.WritesUfsSync(fw.h.GetWriteType()) {
		fw.w.store.MarkUnpersisted(fw.h.GetFileId(), true)
	}
	if need := int(resp.GetReplicasNeeded()); need > 0 {
		if err := fw.w.replicateTo(ctx, info.ID, need, resp.GetReplicaTargets()); err != nil {
			return err
		}
	}
	return nil
}

// abort discards everything written: the open block, committed blocks and
// the UFS temp file. Nothing of the file stays visible.
func (fw *fileWriter) abort() {
	if fw.cur != nil {
		fw.cur.Abort()
	}
	for _, b := range fw.blocks {
		fw.w.store.Remove(b.GetBlockId())
	}
	if fw.ufsW != nil {
		fw.ufsQ.stop()
		if err := fw.ufsW.Abort(); err != nil {
			fw.w.log.Error(err, "abort UFS file", "path", fw.h.GetUfsPath())
		}
	}
}
