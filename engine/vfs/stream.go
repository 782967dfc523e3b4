package vfs

import (
	"context"
	"errors"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// streamQueue bounds the writes a stream holds that the worker has not
// taken yet (FUSE writes are up to 1 MiB each).
const streamQueue = 8

// stream sends a fresh file's writes to a worker while the application
// writes them, as long as they come in order from offset 0: the first
// commit then only finishes the worker's stream and completes the file,
// instead of copying the whole stage at close. The stage still gets every
// write (reads of the file, and the commit if the stream breaks: a write
// out of order, a truncate, a rename, a failed worker stream).
//
// The stage's mu guards next, broken and the queue's sends; the sender
// goroutine is owned by the stream and joined by finish or stop.
type stream struct {
	info *apiv1.FileInfo
	wt   apiv1.WriteType
	c    Data

	next    int64 // bytes queued so far
	broken  bool
	q       chan []byte
	done    chan struct{}
	cancel  context.CancelFunc // ends the worker stream (stop)
	w       *client.Writer     // set by the sender; read after done
	err     error              // the sender's; read after done
	started bool
}

func newStream(c Data, info *apiv1.FileInfo, wt apiv1.WriteType) *stream {
	return &stream{info: info, wt: wt, c: c}
}

// write queues p, written at off, for the worker (the stage's mu held).
func (s *stream) write(p []byte, off int64) {
	if s.broken {
		return
	}
	if off != s.next {
		s.stop()
		return
	}
	if !s.started {
		s.started = true
		s.q = make(chan []byte, streamQueue)
		s.done = make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		go s.send(ctx)
	}
	s.q <- append([]byte(nil), p...) // the FUSE buffer is reused
	s.next += int64(len(p))
}

// truncate notes a truncate to size (the stage's mu held): only one to
// where the stream already is keeps it.
func (s *stream) truncate(size int64) {
	if size != s.next {
		s.stop()
	}
}

// send opens the worker stream and sends the queue into it until the
// queue closes or a send fails (it then drains the queue).
func (s *stream) send(ctx context.Context) {
	defer close(s.done)
	s.w, s.err = s.c.WriteCreated(ctx, s.info, s.wt)
	for p := range s.q {
		if s.err == nil {
			_, s.err = s.w.Write(p)
		}
	}
}

// stop breaks the stream: what was sent is dropped without removing the
// file (the commit writes the stage into it, and the worker replaces the
// blocks this stream left).
func (s *stream) stop() {
	if s.broken {
		return
	}
	s.broken = true
	if !s.started {
		return
	}
	close(s.q)
	s.cancel() // a send blocked on the worker returns
	<-s.done
	if s.w != nil {
		s.w.Cancel()
	}
}

// errStreamBroken: the stream cannot finish the file; commit from the stage.
var errStreamBroken = errors.New("stream broken")

// finish ends an intact stream of size bytes and completes the file; the
// returned writer's Info is the completed file. errStreamBroken when the
// stage has to be written instead (the stream is stopped then).
func (s *stream) finish(size int64) (*client.Writer, error) {
	if s.broken || !s.started || s.next != size {
		s.stop()
		return nil, errStreamBroken
	}
	s.broken = true
	close(s.q)
	<-s.done
	defer s.cancel()
	if s.err != nil {
		if s.w != nil {
			s.w.Cancel()
		}
		return nil, errStreamBroken
	}
	if err := s.w.Close(); err != nil {
		return nil, err
	}
	return s.w, nil
}
