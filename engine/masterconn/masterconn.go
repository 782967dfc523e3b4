// Package masterconn is a gRPC connection to whichever master of a group
// leads. It implements grpc.ClientConnInterface, so generated clients
// (apiv1.NewFileSystemMasterClient(conn)) work unchanged, and follows the
// leader on every call: a standby's NotLeader status names the leader's RPC
// address (meta.NotLeaderError) and the call goes there at once; an
// unreachable master or one that knows no leader sends the call to the next
// address, with bounded backoff, until the call succeeds or RetryTimeout
// passes. An attempt stuck on a master that stopped answering (SIGSTOP, a
// partition) is abandoned as soon as another master is found leading.
//
// Every unary call carries a request id (meta.RequestIDHeader) that stays
// the same across its retries, so the master applies a retried mutation once.
package masterconn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Defaults.
const (
	DefaultRetryTimeout   = 15 * time.Second
	DefaultAttemptTimeout = 60 * time.Second
	// suspectAfter: an attempt running this long makes the connection ask
	// the other masters whether one of them leads now.
	suspectAfter = time.Second
	probeTimeout = 500 * time.Millisecond
	minBackoff   = 10 * time.Millisecond
	maxBackoff   = 100 * time.Millisecond
)

// Config configures a Conn.
type Config struct {
	// Addresses are host:port of every master (one is fine).
	Addresses []string
	// RetryTimeout bounds how long one call keeps retrying masters that are
	// unreachable or not leading (default DefaultRetryTimeout).
	RetryTimeout time.Duration
	// AttemptTimeout bounds one attempt when the caller's context has no
	// deadline (default DefaultAttemptTimeout).
	AttemptTimeout time.Duration
	// DialOptions are added to the defaults (insecure transport).
	DialOptions []grpc.DialOption
}

// Conn is safe for concurrent use.
type Conn struct {
	cfg    Config
	client []byte // request id: this connection's random client id
	seq    atomic.Uint64

	mu     sync.Mutex
	addrs  []string // configured addresses, then leaders learned from hints
	conns  map[string]*grpc.ClientConn
	target string // where calls go first
	closed bool
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// errLeaderMoved cancels an attempt stuck on a master after another master
// was found leading.
var errLeaderMoved = errors.New("another master leads now")

// New returns a connection; masters are dialled on first use.
func New(cfg Config) (*Conn, error) {
	if len(cfg.Addresses) == 0 {
		return nil, fmt.Errorf("%w: no master address", meta.ErrInvalidArgument)
	}
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = DefaultRetryTimeout
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("create client id: %w", err)
	}
	c := &Conn{cfg: cfg, client: id, conns: map[string]*grpc.ClientConn{}}
	for _, a := range cfg.Addresses {
		if !slices.Contains(c.addrs, a) {
			c.addrs = append(c.addrs, a)
		}
	}
	c.target = c.addrs[0]
	return c, nil
}

// Addresses returns the configured master addresses.
func (c *Conn) Addresses() []string { return slices.Clone(c.cfg.Addresses) }

// Target returns the master calls go to first: the leader, as far as known.
func (c *Conn) Target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target
}

// Close closes every connection; later calls fail.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for a, cc := range c.conns {
		errs = append(errs, cc.Close())
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

// conn returns the connection to addr, dialling it lazily.
func (c *Conn) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("call master %s: %w: connection closed", addr, meta.ErrUnavailable)
	}
	if cc := c.conns[addr]; cc != nil {
		return cc, nil
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
	}, c.cfg.DialOptions...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to master %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// Invoke runs a unary call on the leader, following it across fail-overs.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ctx = metadata.AppendToOutgoingContext(ctx, meta.RequestIDHeader, meta.FormatRequestID(c.client, c.seq.Add(1)))
	return c.retry(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		return cc.Invoke(ctx, method, args, reply, opts...)
	})
}

// NewStream opens a stream on the leader. Only opening is retried; a stream
// that fails later (a NotLeader status on the first message) updates where
// the next call goes, and the caller reopens it.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var s grpc.ClientStream
	var addr string
	err := c.retry(ctx, func(_ context.Context, cc *grpc.ClientConn) error {
		var err error
		addr = cc.Target()
		s, err = cc.NewStream(ctx, desc, method, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &stream{ClientStream: s, c: c, ctx: ctx, addr: addr}, nil
}

type stream struct {
	grpc.ClientStream
	c    *Conn
	ctx  context.Context // the caller's: the stream's own is cancelled once it fails
	addr string
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && s.ctx.Err() == nil {
		if cause := meta.FromStatus(err); retryable(cause) {
			s.c.route(passthroughAddr(s.addr), cause, map[string]bool{})
		}
	}
	return err
}

func passthroughAddr(target string) string {
	const p = "passthrough:///"
	if len(target) > len(p) && target[:len(p)] == p {
		return target[len(p):]
	}
	return target
}

// retry runs fn against the leader until it succeeds, fails with an error
// that is not about leadership or reachability, or RetryTimeout passes.
func (c *Conn) retry(ctx context.Context, fn func(context.Context, *grpc.ClientConn) error) error {
	start := time.Now()
	backoff := minBackoff
	failed := map[string]bool{} // unreachable or leaderless this round
	hops := 0                   // leaders named this round
	var last error
	var lastAddr string
	for {
		addr := c.Target()
		cc, err := c.conn(addr)
		if err != nil {
			return err
		}
		err = c.attempt(ctx, addr, cc, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		cause := meta.FromStatus(err)
		if !retryable(cause) {
			return cause
		}
		last, lastAddr = cause, addr
		if time.Since(start) >= c.cfg.RetryTimeout {
			return c.giveUp(lastAddr, last)
		}
		if hops < c.count() && c.route(addr, cause, failed) {
			hops++
			continue // straight to the named leader
		}
		if hops >= c.count() {
			failed[addr] = true // masters keep naming each other: back off
		}
		if len(failed) >= c.count() || hops >= c.count() {
			// Every master refused or knows no leader (an election is on):
			// wait a little, then start a new round.
			clear(failed)
			hops = 0
			t := time.NewTimer(min(backoff, time.Until(start.Add(c.cfg.RetryTimeout))))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (last error from %s: %v)", ctx.Err(), lastAddr, last)
			case <-t.C:
			}
			backoff = min(backoff*2, maxBackoff)
		}
	}
}

// attempt runs fn once on addr. While it runs longer than suspectAfter, the
// other masters are asked who leads; if another one does, the attempt is
// abandoned (retrying is safe: mutations carry request ids).
func (c *Conn) attempt(ctx context.Context, addr string, cc *grpc.ClientConn, fn func(context.Context, *grpc.ClientConn) error) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		actx, stop = context.WithTimeout(actx, c.cfg.AttemptTimeout)
		defer stop()
	}
	var watchdog *time.Timer // read and reset under wmu
	var wmu sync.Mutex
	stopped := false
	check := func() {
		if leader := c.probe(actx, addr); leader != "" {
			c.setTarget(leader)
			cancel(errLeaderMoved)
			return
		}
		wmu.Lock()
		defer wmu.Unlock()
		if !stopped {
			watchdog.Reset(suspectAfter)
		}
	}
	if c.count() > 1 {
		wmu.Lock()
		watchdog = time.AfterFunc(suspectAfter, check)
		wmu.Unlock()
		defer func() {
			wmu.Lock()
			stopped = true
			watchdog.Stop()
			wmu.Unlock()
		}()
	}
	err := fn(actx, cc)
	if err != nil && errors.Is(context.Cause(actx), errLeaderMoved) && ctx.Err() == nil {
		return fmt.Errorf("master %s stopped answering: %w: %w", addr, errLeaderMoved, meta.ErrUnavailable)
	}
	return err
}

// probe asks every master but stuck which one leads; it returns that
// master's address ("" if none other than stuck claims to lead). Of two
// claimants (a deposed leader that has not noticed yet) the higher term wins.
func (c *Conn) probe(ctx context.Context, stuck string) string {
	c.mu.Lock()
	addrs := slices.Clone(c.addrs)
	c.mu.Unlock()
	type claim struct {
		addr string
		term int64
	}
	claims := make(chan claim, len(addrs))
	var wg sync.WaitGroup
	for _, a := range addrs {
		if a == stuck {
			continue
		}
		cc, err := c.conn(a)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			info, err := apiv1.NewMetaMasterClient(cc).GetMasterInfo(pctx, &apiv1.GetMasterInfoRequest{})
			if err == nil && info.GetIsLeader() {
				claims <- claim{a, info.GetJournalTerm()}
			}
		}()
	}
	wg.Wait()
	close(claims)
	best := claim{}
	for cl := range claims {
		if best.addr == "" || cl.term > best.term {
			best = cl
		}
	}
	return best.addr
}

// route decides where the next attempt goes after addr failed with err. It
// returns true when a master named the leader (go there without waiting);
// otherwise addr joins failed and the next address in turn is chosen.
func (c *Conn) route(addr string, err error, failed map[string]bool) bool {
	var nl *meta.NotLeaderError
	if errors.As(err, &nl) && nl.Leader != "" && nl.Leader != addr && !failed[nl.Leader] {
		c.setTarget(nl.Leader)
		return true
	}
	failed[addr] = true
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.target != addr {
		return false // another call already moved on
	}
	i := slices.Index(c.addrs, addr)
	for k := 1; k <= len(c.addrs); k++ {
		next := c.addrs[(i+k)%len(c.addrs)]
		if !failed[next] {
			c.target = next
			return false
		}
	}
	c.target = c.addrs[(i+1)%len(c.addrs)]
	return false
}

func (c *Conn) setTarget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.addrs, addr) {
		c.addrs = append(c.addrs, addr)
	}
	c.target = addr
}

func (c *Conn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.addrs)
}

// retryable: the master is unreachable, not the leader, or starting. An
// unreachable under storage is the master's answer, not a reason to retry.
func retryable(err error) bool {
	if errors.Is(err, meta.ErrUFSUnavailable) {
		return false
	}
	if errors.Is(err, meta.ErrUnavailable) || errors.Is(err, meta.ErrNotLeader) {
		return true
	}
	return status.Code(err) == codes.Unavailable
}

func (c *Conn) giveUp(addr string, err error) error {
	if errors.Is(err, meta.ErrNotLeader) {
		return fmt.Errorf("no leader master among %v after %v: %w", c.cfg.Addresses, c.cfg.RetryTimeout, err)
	}
	if len(c.cfg.Addresses) == 1 {
		return fmt.Errorf("cannot reach the master at %s (is `alcove local` or `alcove master` running? set --master or ALCOVE_MASTER): %w", addr, err)
	}
	return fmt.Errorf("cannot reach a leader among the masters %v (last tried %s): %w", c.cfg.Addresses, addr, err)
}
