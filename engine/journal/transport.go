package journal

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's TCP transport with an advertised address that may
// differ from the bound one (a DNS name, a proxy), which raft's own
// NewTCPTransport does not allow (it wants a resolved IP).
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dialTLS   *tls.Config // nil: plain TCP
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// Addr is what raft records as this member's address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial resolves address at each dial, so members may move (new pod IPs).
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if s.dialTLS != nil {
		return tls.DialWithDialer(&d, "tcp", string(address), s.dialTLS) // the handshake is bounded by timeout too
	}
	return d.Dial("tcp", string(address))
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// newTCPTransport listens on bind and advertises advertise (default: the
// bound address, so port 0 works in tests); with listenTLS and dialTLS its
// connections are TLS (handshakes run on raft's per-connection goroutines).
func newTCPTransport(bind, advertise string, listenTLS, dialTLS *tls.Config, hl *hcLogger) (*raft.NetworkTransport, error) {
	if (listenTLS == nil) != (dialTLS == nil) {
		return nil, fmt.Errorf("journal transport: set both TLS configurations or neither")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen journal transport %s: %w", bind, err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	if listenTLS != nil {
		ln = tls.NewListener(ln, listenTLS)
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		ln.Close()
		return nil, fmt.Errorf("journal address %q: %w", advertise, err)
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, advertise: advertiseAddr(advertise), dialTLS: dialTLS},
		MaxPool: 3,
		// I/O deadline of one raft RPC: a member that stops answering is
		// given up on after this long (elections do not wait for it).
		Timeout: 5 * time.Second,
		Logger:  hl,
	}), nil
}
