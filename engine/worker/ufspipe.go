package worker

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alcove-io/alcove/engine/ufs"
)

// ufsPipeDepth bounds the chunks (up to 1 MiB each) queued for the UFS.
const ufsPipeDepth = 16

// ufsPipe writes a file's UFS copy in its own goroutine, in the order of
// the stream, so that a CACHE_THROUGH write stores into the cache and the
// UFS at once rather than one after the other (and a THROUGH write
// receives the next chunk while the UFS takes this one). The goroutine is
// the pipe's; end and stop join it.
type ufsPipe struct {
	w      ufs.Writer
	q      chan ufsChunk
	done   chan struct{}
	failed atomic.Bool
	err    error // the first UFS error; read after done
	bytes  prometheus.Counter
	closed bool // q closed; only the file writer's goroutine calls send, end and stop
}

// ufsChunk is data, or (skip > 0) a run of zeros.
type ufsChunk struct {
	data []byte
	skip int64
}

func newUFSPipe(w ufs.Writer, bytes prometheus.Counter) *ufsPipe {
	p := &ufsPipe{w: w, q: make(chan ufsChunk, ufsPipeDepth), done: make(chan struct{}), bytes: bytes}
	go p.run()
	return p
}

func (p *ufsPipe) run() {
	defer close(p.done)
	for c := range p.q {
		if p.err != nil {
			continue // drain
		}
		if c.skip > 0 {
			p.err = ufs.Skip(p.w, c.skip)
		} else if _, p.err = p.w.Write(c.data); p.err == nil {
			p.bytes.Add(float64(len(c.data)))
		}
		if p.err != nil {
			p.err = fmt.Errorf("write UFS: %w", p.err)
			p.failed.Store(true)
		}
	}
}

// send queues c (data is not modified afterwards); once an earlier chunk
// failed it returns that error instead.
func (p *ufsPipe) send(c ufsChunk) error {
	if p.failed.Load() {
		return p.end()
	}
	p.q <- c
	return nil
}

// end waits until everything queued is written and returns the first error.
func (p *ufsPipe) end() error {
	p.stop()
	return p.err
}

// stop ends and joins the goroutine (idempotent); queued chunks are
// still written unless one failed.
func (p *ufsPipe) stop() {
	if !p.closed {
		p.closed = true
		close(p.q)
	}
	<-p.done
}
