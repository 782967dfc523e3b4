package worker

import (
	"context"
	"fmt"
	"io"
	"sync"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// maxConcurrentPersists bounds background persist jobs.
const maxConcurrentPersists = 2

// persister runs the master's persist commands, one per file at a time.
// While the worker drains it takes no new command and its running ones are
// waited for (not canceled: an interrupted persist would only be redone).
type persister struct {
	w        *Worker
	sem      chan struct{}
	mu       sync.Mutex
	inflight map[int64]bool
	wg       sync.WaitGroup
	g        gate
}

func newPersister(w *Worker) *persister {
	return &persister{w: w, sem: make(chan struct{}, maxConcurrentPersists), inflight: map[int64]bool{}}
}

func (p *persister) start(cmd *apiv1.PersistCommand) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[cmd.GetFileId()] || !p.g.enter() {
		return
	}
	p.inflight[cmd.GetFileId()] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.g.leave()
		p.sem <- struct{}{}
		defer func() { <-p.sem }()
		p.run(cmd)
		p.mu.Lock()
		delete(p.inflight, cmd.GetFileId())
		p.mu.Unlock()
	}()
}

func (p *persister) wait() { p.wg.Wait() }

// drain stops taking commands and waits for the running ones until ctx
// ends; it returns how many were still running.
func (p *persister) drain(ctx context.Context) int { return p.g.drain(ctx) }

func (p *persister) run(cmd *apiv1.PersistCommand) {
	w := p.w
	ctx := w.bg // canceled by Close: an interrupted persist is retried by the master
	log := w.log.WithValues("fileID", cmd.GetFileId(), "path", cmd.GetPath(), "ufsPath", cmd.GetUfsPath())
	err := w.persistFile(ctx, cmd)
	done := &apiv1.PersistDoneRequest{WorkerId: w.ID(), FileId: cmd.GetFileId(), UfsTempPath: cmd.GetUfsTempPath()}
	if err != nil {
		log.Error(err, "persist file")
		done.Error = err.Error()
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, rerr := w.master.PersistDone(rctx, done); rerr != nil {
		log.Error(meta.FromStatus(rerr), "report persist result to the master")
		return
	}
	if err == nil {
		// Only now is the UFS copy in place: until then the cached blocks
		// stay the protected only copy.
		log.V(1).Info("persisted file", "length", cmd.GetLength())
		w.store.MarkPersisted(cmd.GetFileId())
	}
}

// persistFile writes the file's cached blocks, in order, to the temporary
// UFS object the master named, committed atomically; the master moves it
// into place (or drops it if the file was deleted meanwhile).
func (w *Worker) persistFile(ctx context.Context, cmd *apiv1.PersistCommand) error {
	if err := meta.ValidateBlockSize(cmd.GetBlockSizeBytes()); err != nil {
		return fmt.Errorf("persist file %d: %w", cmd.GetFileId(), err)
	}
	if cmd.GetUfsTempPath() == "" {
		return fmt.Errorf("persist file %d: %w: the master named no temporary object", cmd.GetFileId(), meta.ErrInvalidArgument)
	}
	fs, path, err := w.resolveUFS(ctx, cmd.GetUfsTempPath(), cmd.GetMountId())
	if err != nil {
		return fmt.Errorf("persist file %d: %w", cmd.GetFileId(), err)
	}
	wr, err := fs.Create(ctx, path, cmd.GetMode())
	if err != nil {
		return fmt.Errorf("persist file %d: %w", cmd.GetFileId(), err)
	}
	if err := w.copyBlocks(wr, cmd); err != nil {
		wr.Abort()
		return fmt.Errorf("persist file %d: %w", cmd.GetFileId(), err)
	}
	if err := wr.Close(); err != nil {
		return fmt.Errorf("persist file %d: commit %s: %w", cmd.GetFileId(), path, err)
	}
	w.metrics.bytesWrittenUFS.Add(float64(cmd.GetLength()))
	return nil
}

func (w *Worker) copyBlocks(dst io.Writer, cmd *apiv1.PersistCommand) error {
	bs, length := cmd.GetBlockSizeBytes(), cmd.GetLength()
	buf := chunkPool.Get(DefaultChunkSize)
	defer chunkPool.Put(buf)
	for i := range meta.BlockCount(length, bs) {
		if meta.IsHole(cmd.GetHoles(), i) {
			if err := ufs.Skip(dst, meta.BlockLength(length, bs, i)); err != nil {
				return fmt.Errorf("skip hole block %d: %w", i, err)
			}
			continue
		}
		id := meta.BlockID(cmd.GetFileId(), i)
		h, err := w.store.OpenBlock(id)
		if err != nil {
			return err
		}
		want := meta.BlockLength(length, bs, i)
		if h.Length != want {
			h.Close()
			return fmt.Errorf("block %d: %w: cached %d bytes, the file needs %d", id, meta.ErrFailedPrecondition, h.Length, want)
		}
		_, err = io.CopyBuffer(dst, io.NewSectionReader(h.File, h.Offset, h.Length), *buf)
		h.Close()
		if err != nil {
			return fmt.Errorf("copy block %d: %w", id, err)
		}
	}
	return nil
}
