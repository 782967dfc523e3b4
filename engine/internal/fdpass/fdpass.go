// Package fdpass passes one open file descriptor with bytes on a unix
// stream socket (SCM_RIGHTS): the worker hands block cache files to
// short-circuit clients, the FUSE daemon hands /dev/fuse to its successor.
package fdpass

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Send writes p with fd attached to its first byte (fd < 0: none).
func Send(c *net.UnixConn, p []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	n, _, err := c.WriteMsgUnix(p, oob, nil)
	if err != nil {
		return fmt.Errorf("send fd: %w", err)
	}
	if n < len(p) {
		if _, err := c.Write(p[n:]); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

// Recv reads up to len(p) bytes and the fd that came with them (-1 when
// none did). One fd is expected at most: any other received fd is closed
// at once, so a confused or hostile peer cannot make the process leak
// descriptors. On an error no fd is returned (and none stays open).
func Recv(c *net.UnixConn, p []byte) (n, fd int, err error) {
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(p, oob)
	fd = -1
	if oobn > 0 {
		var perr error
		fd, perr = parse(oob[:oobn])
		if perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return n, -1, err
	}
	return n, fd, nil
}

// parse returns the first fd of a control message and closes the rest.
func parse(oob []byte) (int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, fmt.Errorf("parse control message: %w", err)
	}
	fd := -1
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, x := range fds {
			if fd < 0 {
				fd = x
			} else {
				unix.Close(x) // never expected: do not leak
			}
		}
	}
	if fd >= 0 {
		unix.CloseOnExec(fd)
	}
	return fd, nil
}
