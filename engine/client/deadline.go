package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/alcove-io/alcove/engine/meta"
)

// Deadlines on worker streams. A worker that stops answering (SIGSTOP, a
// partition, a wedged disk) must not hang a reader: every wait for block
// bytes — a gRPC message, a read on the data port, a domain-socket answer —
// is bounded by DataTimeout, after which the reader marks the worker slow
// and goes to another copy or to the UFS through another worker.
// Connections also send keepalives, so a dead peer is noticed while idle.
const (
	// DefaultDataTimeout is the longest wait for the next bytes of a block.
	DefaultDataTimeout = 5 * time.Second
	// slowFor is how long a worker that timed out is tried last.
	slowFor = 30 * time.Second
	// maxReadRetries bounds how often one read moves to another source.
	maxReadRetries = 3
)

// workerWait paces the retries of a call that no worker can serve now
// (the only workers are restarting, draining or unreachable, or a block's
// only copies are on a worker that is coming back): 100 ms doubling to 1 s,
// for at most the client's RetryTimeout, the bound that also applies to
// masters (alluxio.user.rpc.retry.max.duration). A rolling restart of a
// node's worker then delays I/O instead of failing it.
type workerWait struct {
	c     *Client
	end   time.Time
	delay time.Duration
}

func (c *Client) newWorkerWait() *workerWait {
	return &workerWait{c: c, end: time.Now().Add(c.cfg.RetryTimeout), delay: 100 * time.Millisecond}
}

// next waits before the next attempt with fresh worker information; false
// when the time is up or ctx ended.
func (w *workerWait) next(ctx context.Context) bool {
	if time.Now().Add(w.delay).After(w.end) {
		return false
	}
	t := time.NewTimer(w.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	w.delay = min(2*w.delay, time.Second)
	w.c.forgetWorkers()
	return true
}

var workerKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// errSilent says a worker sent nothing within the data timeout.
func errSilent(addr string, d time.Duration) error {
	return fmt.Errorf("worker %s sent nothing for %v: %w", addr, d, meta.ErrUnavailable)
}

// markSlow records that the worker at addr (its gRPC address) timed out.
func (c *Client) markSlow(addr string) {
	if addr == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slow == nil {
		c.slow = map[string]time.Time{}
	}
	c.slow[addr] = time.Now().Add(slowFor)
}

// isSlow reports whether the worker at addr timed out recently.
func (c *Client) isSlow(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.slow[addr]
	if ok && time.Now().After(until) {
		delete(c.slow, addr)
		return false
	}
	return ok
}

// recvWithin receives the next message of st, canceling the stream (cancel)
// when nothing arrives within d.
func recvWithin(st grpc.ClientStream, m any, d time.Duration, cancel context.CancelFunc) (timedOut bool, err error) {
	t := time.AfterFunc(d, cancel)
	err = st.RecvMsg(m)
	return !t.Stop(), err
}

// withDataTimeout bounds one wait for a worker's answer.
func (c *Client) withDataTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.DataTimeout)
}

// retryable reports whether a failed block read may move to another source.
func (r *Reader) retryable(err error) bool {
	return r.ctx.Err() == nil && !errors.Is(err, meta.ErrDataLost) && !errors.Is(err, meta.ErrInvalidArgument)
}

// sourceFailed notes a source that failed mid-read: a silent worker is
// marked slow so the next open prefers other copies.
func (r *Reader) sourceFailed(s *source, err error) {
	if s != nil && errors.Is(err, meta.ErrUnavailable) {
		r.c.markSlow(s.worker)
	}
}
