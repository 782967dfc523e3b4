// Package client is Alcove's Go client: metadata calls to the leader master,
// block reads with locality (domain socket, then remote worker, then the UFS
// through a worker) and writes by write type. The CLI, FUSE and CSI use it.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/masterconn"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// Config configures a Client. Zero values take Alluxio's defaults.
type Config struct {
	// MasterAddresses are host:port of the masters; the client finds the leader.
	MasterAddresses []string
	// Node is the node this client runs on (Kubernetes node name or
	// hostname); blocks cached on a worker of the same node are read through
	// its domain socket.
	Node               string
	WriteType          apiv1.WriteType
	ReadType           apiv1.ReadType
	BlockSize          int64
	ReplicationDurable int32
	// RetryTimeout bounds how long a metadata call keeps retrying masters
	// that are unreachable or not leading (a fail-over) before it fails
	// (default masterconn.DefaultRetryTimeout).
	RetryTimeout time.Duration
	// DisableShortCircuit forces reads through gRPC even on the same node.
	DisableShortCircuit bool
	// DisableDataPort reads remote blocks over gRPC ReadBlock even when the
	// worker has a raw data port.
	DisableDataPort bool
	// Owner and Group stamp new files and directories (default: the
	// process's user and primary group).
	Owner, Group string
	// DataTimeout is the longest a read waits for the next bytes from a
	// worker before it goes to another copy or the UFS (default
	// DefaultDataTimeout; alluxio.user.streaming.data.read.timeout).
	DataTimeout time.Duration
	// MetadataSyncInterval (alluxio.user.file.metadata.sync.interval), sent
	// with GetStatus and ListStatus: UFS metadata older than this is re-read
	// (negative: never, 0: always). nil leaves it to the mount and master.
	MetadataSyncInterval *time.Duration
	// TLS is this client's certificate for mTLS to masters, workers (gRPC
	// and data port) and the job master; nil: plaintext (TLS off).
	TLS *security.Source
	// TokenFile is a projected ServiceAccount token (audience alcove) the
	// client proves its user with; it is re-read on every call (kubelet
	// rotates it). Empty: the user is Owner/Group, asserted (SIMPLE).
	TokenFile string
}

// Client is safe for concurrent use.
type Client struct {
	cfg Config

	master *masterconn.Conn // follows the leader

	mu       sync.Mutex
	workers  map[string]*grpc.ClientConn
	sc       map[string]*shortcircuit.Client
	dataIdle map[string][]net.Conn // idle data-port connections by worker
	wcache   []*apiv1.WorkerInfo
	wcacheAt time.Time
	slow     map[string]time.Time // workers that timed out, until when (see deadline.go)
}

// New returns a client; connections are made on first use.
func New(cfg Config) (*Client, error) {
	if len(cfg.MasterAddresses) == 0 {
		cfg.MasterAddresses = []string{meta.HostPort("127.0.0.1", meta.MasterRPCPort)}
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.WriteType == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
		cfg.WriteType = meta.DefaultWriteType
	}
	if cfg.ReadType == apiv1.ReadType_READ_TYPE_UNSPECIFIED {
		cfg.ReadType = meta.DefaultReadType
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = meta.DefaultBlockSize
	}
	if err := meta.ValidateBlockSize(cfg.BlockSize); err != nil {
		return nil, err
	}
	if cfg.Owner == "" {
		cfg.Owner, cfg.Group = currentUser()
	}
	if cfg.RetryTimeout == 0 {
		cfg.RetryTimeout = masterconn.DefaultRetryTimeout
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	c := &Client{cfg: cfg, workers: map[string]*grpc.ClientConn{}, sc: map[string]*shortcircuit.Client{}}
	mc, err := masterconn.New(masterconn.Config{Addresses: cfg.MasterAddresses, RetryTimeout: cfg.RetryTimeout,
		DialOptions: []grpc.DialOption{security.DialOption(cfg.TLS, security.RoleMaster),
			grpc.WithChainUnaryInterceptor(c.identify), grpc.WithChainStreamInterceptor(c.identifyStream)}})
	if err != nil {
		return nil, err
	}
	c.master = mc
	return c, nil
}

// Config returns the effective configuration.
func (c *Client) Config() Config { return c.cfg }

// Close releases every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := []error{c.master.Close()}
	for k, w := range c.workers {
		errs = append(errs, w.Close())
		delete(c.workers, k)
	}
	for k, conns := range c.dataIdle {
		for _, conn := range conns {
			errs = append(errs, conn.Close())
		}
		delete(c.dataIdle, k)
	}
	for k, s := range c.sc {
		errs = append(errs, s.Close())
		delete(c.sc, k)
	}
	return errors.Join(errs...)
}

// dataDialOptions are tuned for bulk block streams over loopback and LAN.
func (c *Client) dataDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		security.DialOption(c.cfg.TLS, security.RoleWorker),
		grpc.WithInitialWindowSize(64 << 20),
		grpc.WithInitialConnWindowSize(64 << 20),
		grpc.WithReadBufferSize(1 << 20),
		grpc.WithWriteBufferSize(1 << 20),
		grpc.WithKeepaliveParams(workerKeepalive),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20), grpc.ForceCodecV2(chunkCodec{})),
	}
}

// fs runs fn with the leader's FileSystemMaster; the connection follows the
// leader and retries across fail-overs (engine/masterconn).
func (c *Client) fs(ctx context.Context, fn func(context.Context, apiv1.FileSystemMasterClient) error) error {
	return meta.FromStatus(fn(ctx, apiv1.NewFileSystemMasterClient(c.master)))
}

func (c *Client) metaMaster(ctx context.Context, fn func(context.Context, apiv1.MetaMasterClient) error) error {
	return meta.FromStatus(fn(ctx, apiv1.NewMetaMasterClient(c.master)))
}

func (c *Client) workerConn(addr string) (apiv1.BlockWorkerClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.workers[addr]; ok {
		return apiv1.NewBlockWorkerClient(cc), nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, c.dataDialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("connect to worker %s: %w", addr, err)
	}
	c.workers[addr] = cc
	return apiv1.NewBlockWorkerClient(cc), nil
}

func (c *Client) shortCircuit(ctx context.Context, socket string) (*shortcircuit.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sc[socket]; ok {
		return s, nil
	}
	s, err := shortcircuit.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	c.sc[socket] = s
	return s, nil
}

// dropShortCircuit forgets a broken domain-socket connection.
func (c *Client) dropShortCircuit(socket string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sc[socket]; ok {
		s.Close()
		delete(c.sc, socket)
	}
}

// liveWorkers returns the registered live workers, cached for a few seconds.
func (c *Client) liveWorkers(ctx context.Context) ([]*apiv1.WorkerInfo, error) {
	c.mu.Lock()
	if time.Since(c.wcacheAt) < 3*time.Second && len(c.wcache) > 0 {
		ws := c.wcache
		c.mu.Unlock()
		return ws, nil
	}
	c.mu.Unlock()
	all, err := c.Workers(ctx)
	if err != nil {
		return nil, err
	}
	var live []*apiv1.WorkerInfo
	for _, w := range all {
		if w.GetState() != apiv1.WorkerState_WORKER_LOST {
			live = append(live, w)
		}
	}
	c.mu.Lock()
	c.wcache, c.wcacheAt = live, time.Now()
	c.mu.Unlock()
	return live, nil
}

// forgetWorkers drops the cached worker list (the next call asks the master).
func (c *Client) forgetWorkers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wcache = nil
}

// pickWorkerWaiting picks a worker as pickWorker does, waiting (bounded
// by wait) while none is live.
func (c *Client) pickWorkerWaiting(ctx context.Context, wait *workerWait) (*apiv1.WorkerInfo, error) {
	w, err := c.pickWorker(ctx, -1)
	for errors.Is(err, meta.ErrUnavailable) && wait.next(ctx) {
		w, err = c.pickWorker(ctx, -1)
	}
	return w, err
}

// pickWorker prefers the worker on this client's node, else a stable
// choice by key so that repeated misses of one block go to one worker.
// Workers in skip, and workers that timed out recently while others are
// there, are not picked.
func (c *Client) pickWorker(ctx context.Context, key int64, skip ...string) (*apiv1.WorkerInfo, error) {
	all, err := c.liveWorkers(ctx)
	if err != nil {
		return nil, err
	}
	var ws, slow []*apiv1.WorkerInfo
	for _, w := range all {
		switch {
		case slices.Contains(skip, w.GetAddress()):
		case c.isSlow(w.GetAddress()):
			slow = append(slow, w)
		default:
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		ws = slow
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("no live worker is registered with the master (%d tried): %w", len(skip), meta.ErrUnavailable)
	}
	for _, w := range ws {
		if w.GetNode() == c.cfg.Node {
			return w, nil
		}
	}
	if key < 0 {
		return ws[rand.IntN(len(ws))], nil
	}
	return ws[int(uint64(key)%uint64(len(ws)))], nil
}

// currentUser names the process's user and primary group.
func currentUser() (string, string) {
	u, err := user.Current()
	if err != nil {
		return "", ""
	}
	group := u.Gid
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		group = g.Name
	}
	return u.Username, group
}

// withUser adds who the call acts for: the ServiceAccount token, or the
// configured owner and group.
func (c *Client) withUser(ctx context.Context) (context.Context, error) {
	if c.cfg.TokenFile != "" {
		tok, err := os.ReadFile(c.cfg.TokenFile)
		if err != nil {
			return ctx, fmt.Errorf("read ServiceAccount token: %w", err)
		}
		return security.OutgoingToken(ctx, strings.TrimSpace(string(tok))), nil
	}
	var groups []string
	if c.cfg.Group != "" {
		groups = []string{c.cfg.Group}
	}
	return security.OutgoingUser(ctx, c.cfg.Owner, groups), nil
}

func (c *Client) identify(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, err := c.withUser(ctx)
	if err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *Client) identifyStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := c.withUser(ctx)
	if err != nil {
		return nil, err
	}
	return streamer(ctx, desc, cc, method, opts...)
}
