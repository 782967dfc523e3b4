package client

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// sendLocal sends the rest of the current block to w with sendfile(2)
// when the reader's source is a block of the local worker's cache and w is
// a file descriptor (fs cat's stdout: a pipe or a file): the kernel moves
// the cache's pages into a pipe, or copies them once into a file, instead
// of two copies through a user buffer. handled is false when this does not
// apply (another source, w has no descriptor, the kernel refuses this
// pair): the caller copies instead.
func (r *Reader) sendLocal(w io.Writer) (n int64, handled bool, err error) {
	s := r.src
	bs := r.info.GetBlockSizeBytes()
	if s == nil || s.local == nil || r.noSendfile || r.pos/bs != s.index || r.pos%bs >= s.blockLen {
		return 0, false, nil
	}
	sc, ok := w.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	out, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	in, err := s.local.File.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	inb := r.pos % bs
	off, end := s.local.Offset+inb, s.local.Offset+s.blockLen
	var serr error
	cerr := in.Control(func(infd uintptr) {
		// Write waits (in the runtime's poller) while a non-blocking pipe
		// is full: the callback returns false on EAGAIN.
		err := out.Write(func(outfd uintptr) bool {
			for off < end {
				m, e := unix.Sendfile(int(outfd), int(infd), &off, int(min(end-off, 1<<30)))
				if m > 0 {
					n += int64(m)
				}
				switch {
				case errors.Is(e, unix.EINTR):
				case errors.Is(e, unix.EAGAIN):
					return false
				case e != nil:
					serr = e
					return true
				case m == 0:
					serr = fmt.Errorf("short read of cached block: %w", io.ErrUnexpectedEOF)
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = err
		}
	})
	r.pos += n
	r.count(s.kind, int(n))
	if serr == nil {
		serr = cerr
	}
	if n == 0 && (errors.Is(serr, unix.EINVAL) || errors.Is(serr, unix.ENOSYS) || errors.Is(serr, unix.EOPNOTSUPP)) {
		// This kind of output takes no sendfile: copy, from now on.
		r.noSendfile = true
		return 0, false, nil
	}
	if n == 0 && serr == nil {
		return 0, false, nil // nothing sent: let Read make progress
	}
	if errors.Is(serr, io.ErrUnexpectedEOF) {
		// As in Read: a cached block that ends early is dropped as a
		// source, and the next Read opens another.
		r.closeSource()
		return n, true, nil
	}
	if serr != nil {
		return n, true, fmt.Errorf("send %s at %d: %w", r.info.GetPath(), r.pos, serr)
	}
	return n, true, nil
}
