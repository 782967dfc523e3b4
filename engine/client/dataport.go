package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// maxIdleDataConns bounds the idle data-port connections kept per worker.
const maxIdleDataConns = 8

// dataConn takes an idle connection to a worker's data port or dials one.
func (c *Client) dataConn(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	if idle := c.dataIdle[addr]; len(idle) > 0 {
		conn := idle[len(idle)-1]
		c.dataIdle[addr] = idle[:len(idle)-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to worker data port %s: %w: %w", addr, meta.ErrUnavailable, err)
	}
	if c.cfg.TLS == nil {
		return conn, nil
	}
	tc := tls.Client(conn, c.cfg.TLS.ClientConfig(security.RoleWorker))
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to worker data port %s: TLS handshake: %w: %w", addr, meta.ErrUnavailable, err)
	}
	return tc, nil
}

// releaseDataConn returns a connection that sits between two blocks.
func (c *Client) releaseDataConn(addr string, conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dataIdle == nil {
		c.dataIdle = map[string][]net.Conn{}
	}
	if len(c.dataIdle[addr]) >= maxIdleDataConns {
		conn.Close()
		return
	}
	c.dataIdle[addr] = append(c.dataIdle[addr], conn)
}

// dataStream reads a block range through a worker's raw data port.
func (r *Reader) dataStream(addr string, req *apiv1.ReadBlockRequest, idx, blen int64, kind string) (*source, error) {
	conn, err := r.c.dataConn(r.ctx, addr)
	if err != nil {
		return nil, err
	}
	var hdr apiv1.DataFrameHeader
	conn.SetDeadline(time.Now().Add(r.c.cfg.DataTimeout))
	if err = frame.Write(conn, req); err == nil {
		err = frame.Read(conn, &hdr)
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errSilent(addr, r.c.cfg.DataTimeout)
		}
		return nil, fmt.Errorf("read block %d from worker %s: %w", req.GetBlockId(), addr, err)
	}
	conn.SetWriteDeadline(time.Time{})
	if hdr.GetCode() != 0 {
		r.c.releaseDataConn(addr, conn) // still in step: the worker answered
		return nil, fmt.Errorf("read block %d from worker %s: %w", req.GetBlockId(), addr,
			meta.FromStatus(status.Error(codes.Code(hdr.GetCode()), hdr.GetMessage())))
	}
	s := &source{index: idx, blockLen: blen, end: req.GetOffset() + hdr.GetLength(), kind: kind, next: req.GetOffset(), conn: conn, connAddr: addr, remaining: hdr.GetLength(), c: r.c}
	if s.remaining == 0 {
		s.finishConn()
	}
	return s, nil
}

// readConn reads raw block bytes straight into p: no intermediate buffer.
func (s *source) readConn(p []byte) (int, error) {
	if s.remaining <= 0 {
		return 0, fmt.Errorf("block data ended at %d of %d: %w", s.next, s.blockLen, meta.ErrAborted)
	}
	s.conn.SetReadDeadline(time.Now().Add(s.c.cfg.DataTimeout))
	n, err := s.conn.Read(p[:min(int64(len(p)), s.remaining)])
	s.remaining -= int64(n)
	s.next += int64(n)
	if err != nil {
		s.conn.Close()
		s.conn = nil
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errSilent(s.connAddr, s.c.cfg.DataTimeout)
		}
		return n, fmt.Errorf("read block data: %w", err)
	}
	if s.remaining == 0 {
		s.finishConn()
	}
	return n, nil
}

// finishConn hands a fully read connection back for reuse.
func (s *source) finishConn() {
	if s.conn != nil {
		s.c.releaseDataConn(s.connAddr, s.conn)
		s.conn = nil
	}
}
