package fdpass

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestSendRecv(t *testing.T) {
	a, b := pair(t)
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Send(a, []byte("hello"), int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	n, fd, err := Recv(b, buf)
	if err != nil || n != 5 || fd < 0 || string(buf) != "hello" {
		t.Fatalf("Recv = %d %d %v %q", n, fd, err, buf)
	}
	got := make([]byte, 7)
	if _, err := unix.Pread(fd, got, 0); err != nil || string(got) != "content" {
		t.Fatalf("received fd reads %q, %v", got, err)
	}
	unix.Close(fd)
	// Without an fd.
	if err := Send(a, []byte("x"), -1); err != nil {
		t.Fatal(err)
	}
	if _, fd, err := Recv(b, buf[:1]); err != nil || fd != -1 {
		t.Fatalf("Recv without fd = %d, %v", fd, err)
	}
}

// TestRecvClosesExtraFds: a peer that sends three fds leaves exactly one
// open in the receiver.
func TestRecvClosesExtraFds(t *testing.T) {
	a, b := pair(t)
	var fds []int
	for range 3 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	before := openFds(t)
	if _, _, err := a.WriteMsgUnix([]byte("x"), unix.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
	oobBuf := make([]byte, 1)
	// Room for three fds, as a peer would need to pass them.
	_, fd, err := recvWithRoom(b, oobBuf, 3)
	if err != nil || fd < 0 {
		t.Fatalf("Recv = %d, %v", fd, err)
	}
	if got := openFds(t); got != before+1 {
		t.Fatalf("%d fds open after receiving three, want %d (one kept)", got, before+1)
	}
	unix.Close(fd)
}

// recvWithRoom is Recv with a control buffer for n fds (Recv's own has
// room for one; the kernel closes fds that do not fit, and this test is
// about the ones that do).
func recvWithRoom(c *net.UnixConn, p []byte, n int) (int, int, error) {
	oob := make([]byte, unix.CmsgSpace(4*n))
	got, oobn, _, _, err := c.ReadMsgUnix(p, oob)
	if err != nil {
		return got, -1, err
	}
	fd, err := parse(oob[:oobn])
	return got, fd, err
}
