package shortcircuit

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/internal/fdpass"
	"github.com/alcove-io/alcove/engine/meta"
)

// closeTimeout bounds the CLOSE round trip of a lease.
const closeTimeout = 5 * time.Second

// Client talks to one worker's domain socket. It is safe for concurrent
// use; requests on one connection are serialized.
type Client struct {
	mu     sync.Mutex
	conn   *net.UnixConn
	broken error // set when the connection is out of sync or closed
	buf    []byte
}

// Block is an open, leased cached block: read Length bytes of File at Offset.
// File is the block's cache file, which holds the whole file's cached
// blocks at their file offsets.
type Block struct {
	File   *os.File
	Offset int64
	Length int64
	Tier   string

	c       *Client
	blockID int64
	once    sync.Once
}

// Dial connects to the worker's domain socket at socketPath.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("dial domain socket %s: %w: %w", socketPath, meta.ErrUnavailable, err)
	}
	return &Client{conn: c.(*net.UnixConn)}, nil
}

// Open leases a cached block and receives its cache file's fd. The error
// wraps meta.ErrNotFound when the block is not cached on this worker.
func (c *Client) Open(ctx context.Context, blockID, blockSizeBytes int64, promote bool, token []byte) (*Block, error) {
	resp, f, err := c.roundTrip(ctx, &apiv1.ShortCircuitRequest{Op: apiv1.ShortCircuitRequest_OPEN, BlockId: blockID, BlockSizeBytes: blockSizeBytes, Promote: promote, BlockToken: token})
	if err != nil {
		return nil, fmt.Errorf("short-circuit open block %d: %w", blockID, err)
	}
	if f == nil {
		return nil, fmt.Errorf("short-circuit open block %d: %w: no fd received", blockID, meta.ErrUnavailable)
	}
	return &Block{File: f, Offset: resp.GetOffset(), Length: resp.GetLength(), Tier: resp.GetTier(), c: c, blockID: blockID}, nil
}

// Close closes the fd and ends the lease. Idempotent.
func (b *Block) Close() error {
	var err error
	b.once.Do(func() {
		err = b.File.Close()
		// A silent worker must not hang the closer: past the timeout the
		// connection is dropped, which ends every lease it held.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_, _, cerr := b.c.roundTrip(ctx, &apiv1.ShortCircuitRequest{Op: apiv1.ShortCircuitRequest_CLOSE, BlockId: b.blockID})
		if err == nil && cerr != nil {
			err = fmt.Errorf("short-circuit close block %d: %w", b.blockID, cerr)
		}
	})
	return err
}

// Close closes the connection; the worker releases every lease of it.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = fmt.Errorf("short-circuit client: %w: closed", net.ErrClosed)
	}
	return c.conn.Close()
}

// roundTrip sends req and reads its response, returning a received fd if any.
func (c *Client) roundTrip(ctx context.Context, req *apiv1.ShortCircuitRequest) (*apiv1.ShortCircuitResponse, *os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, nil, c.broken
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, f, err := c.exchange(req)
	if err != nil {
		// The stream may be mid-frame: never reuse it.
		c.broken = fmt.Errorf("short-circuit connection broken: %w: %w", meta.ErrUnavailable, err)
		c.conn.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, c.broken
	}
	if code := codes.Code(resp.GetCode()); code != codes.OK {
		if f != nil {
			f.Close()
		}
		return nil, nil, meta.FromStatus(status.Error(code, resp.GetMessage()))
	}
	return resp, f, nil
}

func (c *Client) exchange(req *apiv1.ShortCircuitRequest) (*apiv1.ShortCircuitResponse, *os.File, error) {
	var err error
	if c.buf, err = frame.Append(c.buf[:0], req); err != nil {
		return nil, nil, err
	}
	if _, err := c.conn.Write(c.buf); err != nil {
		return nil, nil, fmt.Errorf("send request: %w", err)
	}
	// The fd rides on the first bytes of the response: read the header with
	// fdpass.Recv so the control message is not lost.
	var hdr [4]byte
	var f *os.File
	for got := 0; got < len(hdr); {
		n, fd, err := fdpass.Recv(c.conn, hdr[got:])
		if fd >= 0 {
			if f != nil {
				unix.Close(fd) // one fd per response: do not leak a second
			} else {
				f = os.NewFile(uintptr(fd), "alcove-block")
			}
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			return nil, nil, fmt.Errorf("read response: %w", err)
		}
		got += n
	}
	resp := &apiv1.ShortCircuitResponse{}
	if err := frame.ReadBody(c.conn, binary.BigEndian.Uint32(hdr[:]), resp); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, nil, err
	}
	return resp, f, nil
}
