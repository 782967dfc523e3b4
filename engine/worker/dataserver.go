package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/meta"
)

// dataServer is the raw block data port (see DataFrameHeader in
// worker.proto): the bulk-read path that avoids gRPC's 16 KiB HTTP/2 frames
// and copies. Cached bytes go from the cache file to the socket with
// sendfile, without passing through user space.
type dataServer struct {
	w  *Worker
	ln net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// minSendRate bounds how long a peer that stops reading can hold a lease:
// a block must drain at 10 MB/s or better, and never gets less than 30 s.
const minSendRate = 10e6

func (d *dataServer) serve(ctx context.Context) error {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			d.mu.Lock()
			done := d.done
			d.mu.Unlock()
			if done {
				return nil
			}
			return fmt.Errorf("accept on data port: %w", err)
		}
		if !d.track(c) {
			c.Close()
			return nil
		}
		go func() {
			defer d.untrack(c)
			d.handle(ctx, c)
		}()
	}
}

func (d *dataServer) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return false
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *dataServer) untrack(c net.Conn) {
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
	c.Close()
}

// close stops accepting and ends every connection.
func (d *dataServer) close() {
	d.mu.Lock()
	d.done = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.ln.Close()
}

func (d *dataServer) handle(ctx context.Context, c net.Conn) {
	for {
		c.SetReadDeadline(time.Time{})
		var req apiv1.ReadBlockRequest
		if err := frame.Read(c, &req); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				d.w.log.V(2).Info("data port: read request", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		sink := &connSink{c: c}
		err := d.w.readBlock(ctx, &req, sink)
		if err == nil {
			continue
		}
		if sink.started {
			// Mid-block: the peer can only learn of it by the connection ending.
			d.w.log.V(1).Info("data port: block read failed mid-stream", "blockID", req.GetBlockId(), "err", err)
			return
		}
		st, _ := status.FromError(meta.ToStatus(err))
		if werr := frame.Write(c, &apiv1.DataFrameHeader{Code: int32(st.Code()), Message: st.Message()}); werr != nil {
			return
		}
	}
}

// connSink writes a block read to a data-port connection.
type connSink struct {
	c       net.Conn
	started bool
}

func (s *connSink) start(n int64) error {
	s.started = true
	s.c.SetWriteDeadline(time.Now().Add(max(30*time.Second, time.Duration(float64(n)/minSendRate*float64(time.Second)))))
	if err := frame.Write(s.c, &apiv1.DataFrameHeader{Length: n}); err != nil {
		return fmt.Errorf("send header: %w", err)
	}
	return nil
}

func (s *connSink) sendCached(f *os.File, off, n, _ int64, release func()) error {
	defer release()
	tc, ok := s.c.(*net.TCPConn)
	if !ok {
		_, err := io.Copy(s.c, io.NewSectionReader(f, off, n))
		return err
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return fmt.Errorf("data port: %w", err)
	}
	in := int(f.Fd())
	var serr error
	werr := rc.Write(func(fd uintptr) bool {
		for n > 0 {
			k, err := unix.Sendfile(int(fd), in, &off, int(min(n, 1<<30)))
			if k > 0 {
				n -= int64(k)
			}
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false // wait until the socket is writable
			case errors.Is(err, unix.EINTR):
			case err != nil:
				serr = fmt.Errorf("sendfile: %w", err)
				return true
			case k == 0:
				serr = fmt.Errorf("sendfile: cache file ended early: %w", io.ErrUnexpectedEOF)
				return true
			}
		}
		return true
	})
	if werr != nil {
		return fmt.Errorf("send cached block: %w", werr)
	}
	return serr
}

func (s *connSink) sendChunk(buf *[]byte) error {
	defer chunkPool.Put(buf)
	if _, err := s.c.Write(*buf); err != nil {
		return fmt.Errorf("send chunk: %w", err)
	}
	return nil
}
