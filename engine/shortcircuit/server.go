package shortcircuit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/internal/fdpass"
	"github.com/alcove-io/alcove/engine/meta"
)

// Handler opens locally cached blocks for the server.
type Handler interface {
	// OpenLocal leases a cached block (after promoting it to the top tier
	// if promote) and returns its open cache file, the block's offset and
	// length in it, and its tier. The server closes f once the fd is sent
	// and calls release when the client closes the block. An error wrapping
	// meta.ErrNotFound means the block is not cached here. token is the
	// client's block token, which the handler verifies.
	OpenLocal(blockID, blockSize int64, promote bool, token []byte) (f *os.File, offset, length int64, tier string, release func(), err error)
}

// DefaultMaxLeases bounds the blocks one connection holds open: a client
// cannot pin the whole cache against eviction.
const DefaultMaxLeases = 4096

// Options of a server.
type Options struct {
	// Allow checks the connected process (SO_PEERCRED); nil allows all.
	Allow func(*unix.Ucred) error
	// MaxLeases per connection (0: DefaultMaxLeases); an OPEN beyond it
	// fails with ResourceExhausted.
	MaxLeases int
}

// Serve accepts connections on ln until ctx is done or ln is closed, then
// closes ln and every connection, releasing their leases. It returns nil
// after a shutdown.
func Serve(ctx context.Context, ln *net.UnixListener, h Handler, opts Options) error {
	if opts.MaxLeases <= 0 {
		opts.MaxLeases = DefaultMaxLeases
	}
	log := klog.FromContext(ctx).WithName("shortcircuit")
	var (
		mu    sync.Mutex
		conns = map[*net.UnixConn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c *net.UnixConn
		c, err = ln.AcceptUnix()
		if err != nil {
			break
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := checkPeer(c, opts.Allow); err != nil {
				log.Info("Domain socket connection refused", "err", err)
				c.Close()
			} else {
				serveConn(log, c, h, opts.MaxLeases)
			}
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	ln.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("accept on domain socket: %w", err)
}

// serveConn answers one connection's requests in order.
func serveConn(log klog.Logger, c *net.UnixConn, h Handler, maxLeases int) {
	defer c.Close()
	leases := map[int64][]func(){} // block id → releases, one per OPEN
	held := 0
	defer func() {
		for _, rs := range leases {
			for _, r := range rs {
				r()
			}
		}
	}()
	var out []byte
	for {
		var req apiv1.ShortCircuitRequest
		if err := frame.Read(c, &req); err != nil {
			return // EOF or a broken client: the deferred releases run
		}
		var (
			resp = &apiv1.ShortCircuitResponse{}
			f    *os.File
		)
		switch req.GetOp() {
		case apiv1.ShortCircuitRequest_OPEN:
			if held >= maxLeases {
				setErr(resp, fmt.Errorf("open block %d: %w: this connection holds %d blocks open; close some first", req.GetBlockId(), meta.ErrNoSpace, held))
				break
			}
			var release func()
			var err error
			f, resp.Offset, resp.Length, resp.Tier, release, err = h.OpenLocal(req.GetBlockId(), req.GetBlockSizeBytes(), req.GetPromote(), req.GetBlockToken())
			if err != nil {
				setErr(resp, fmt.Errorf("open block %d: %w", req.GetBlockId(), err))
				break
			}
			leases[req.GetBlockId()] = append(leases[req.GetBlockId()], release)
			held++
		case apiv1.ShortCircuitRequest_CLOSE:
			rs := leases[req.GetBlockId()]
			if len(rs) > 0 { // closing an unknown block succeeds (idempotent)
				rs[len(rs)-1]()
				held--
				if rs = rs[:len(rs)-1]; len(rs) == 0 {
					delete(leases, req.GetBlockId())
				} else {
					leases[req.GetBlockId()] = rs
				}
			}
		default:
			setErr(resp, fmt.Errorf("%w: unknown short-circuit op %v", meta.ErrInvalidArgument, req.GetOp()))
		}
		var err error
		if out, err = frame.Append(out[:0], resp); err != nil {
			log.Error(err, "encode short-circuit response")
			return
		}
		fd := -1
		if f != nil {
			fd = int(f.Fd())
		}
		err = fdpass.Send(c, out, fd)
		if f != nil {
			f.Close()
		}
		if err != nil {
			log.V(2).Info("short-circuit client gone", "err", err)
			return
		}
	}
}

// checkPeer applies allow to the credentials of the process at the other
// end of c.
func checkPeer(c *net.UnixConn, allow func(*unix.Ucred) error) error {
	if allow == nil {
		return nil
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) { cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if gerr != nil {
		return fmt.Errorf("peer credentials: %w", gerr)
	}
	if err := allow(cred); err != nil {
		return fmt.Errorf("peer pid %d: %w: %w", cred.Pid, meta.ErrPermission, err)
	}
	return nil
}

func setErr(resp *apiv1.ShortCircuitResponse, err error) {
	st, _ := status.FromError(meta.ToStatus(err))
	resp.Code = int32(st.Code())
	resp.Message = st.Message()
}
