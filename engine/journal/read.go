package journal

import (
	"context"
	"sync"
)

// readBarrier coalesces leadership checks for reads. A read must be covered
// by a check that STARTED after the read arrived (a check already in flight
// may have been answered by followers before a newer leader was elected), so
// callers that arrive during a round wait for the next one, which then serves
// all of them: one heartbeat round per batch of concurrent reads.
type readBarrier struct {
	verify func() error

	mu      sync.Mutex
	running bool
	next    *readRound // gathers callers for the round after the running one
}

type readRound struct {
	done chan struct{}
	err  error
}

func (b *readBarrier) wait(ctx context.Context) error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &readRound{done: make(chan struct{})}
	}
	r := b.next
	if !b.running {
		b.startLocked()
	}
	b.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return r.err
	}
}

// startLocked runs the gathered round. Its goroutine is owned by the round:
// it ends when raft answers (raft fails pending checks on shutdown).
func (b *readBarrier) startLocked() {
	r := b.next
	b.next = nil
	b.running = true
	go func() {
		r.err = b.verify()
		close(r.done)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.running = false
		if b.next != nil {
			b.startLocked()
		}
	}()
}
