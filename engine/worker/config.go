// Package worker is the Alcove worker daemon: it owns the node's block cache
// (engine/blockstore), serves blocks over gRPC streams and, to local clients,
// over the domain socket by passing cache file fds (engine/shortcircuit),
// reads through to the UFS on a miss, writes files by write type, and
// heartbeats its blocks and capacity to the master.
//
// The cache outlives the process (engine/blockstore's manifests): a
// restarted worker registers the blocks it restored, with the cluster id
// they were recorded for, and serves them once the master accepted them.
// On SIGTERM it drains (drain.go): new writes are refused with Unavailable,
// writes and persists in flight finish. ASYNC_THROUGH blocks are pushed to
// replication.durable peers before a write is acknowledged (replicate.go).
package worker

import (
	"fmt"
	"os"
	"time"

	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Default addresses (Alluxio's ports).
var (
	DefaultAddress     = meta.HostPort("127.0.0.1", meta.WorkerRPCPort)
	DefaultWebAddress  = meta.HostPort("", meta.WorkerWebPort)
	DefaultDataAddress = meta.HostPort("127.0.0.1", meta.WorkerDataPort)
)

// Defaults, Alluxio's where Alluxio has one.
const (
	DefaultAsyncCacheThreads = 8 // alluxio.worker.network.async.cache.manager.threads.max
	DefaultHeartbeatInterval = time.Second
	DefaultChunkSize         = 1 << 20
	maxChunkSize             = 4 << 20
)

// Config configures a worker.
type Config struct {
	// MasterAddresses are host:port of the masters' gRPC services (every
	// member of an HA group); the worker follows the leader.
	MasterAddresses []string
	Address         string // gRPC listen address; "" → DefaultAddress; port 0 picks one
	// WebAddress serves /metrics and /healthz; "" disables it. DefaultConfig
	// sets DefaultWebAddress.
	WebAddress   string
	DomainSocket string // path of the short-circuit socket; "" disables short-circuit
	// DataAddress is the raw block data port (sendfile reads for remote
	// clients); "" disables it and remote clients use gRPC ReadBlock.
	DataAddress string
	Node        string // Kubernetes node name; "" → hostname
	Tiers       []blockstore.TierConfig
	// Ramdisk mounts a dedicated tmpfs with transparent huge pages on the
	// MEM tier's directory (needs CAP_SYS_ADMIN), like Alluxio's
	// alluxio-mount.sh; the worker falls back to the directory as it is
	// when the mount is refused. The ramdisk outlives the worker (its blocks
	// are kept across restarts); `alcove format` unmounts it.
	Ramdisk           bool
	AsyncCacheThreads int           // 0 → DefaultAsyncCacheThreads
	HeartbeatInterval time.Duration // 0 → DefaultHeartbeatInterval
	// DrainTimeout bounds the graceful exit of Run (finishing writes and
	// persists after SIGTERM); 0 → DefaultDrainTimeout.
	DrainTimeout time.Duration
	// TLS, when set, is the worker's certificate: its gRPC server and raw
	// data port require client certificates from the cluster CA, and it
	// calls the master and peer workers with mTLS. nil: plaintext.
	TLS *security.Source
	// DomainSocketGroup is the group (gid) that may use the domain socket
	// besides root and the worker's own user (mode 0660); 0 or -1: the
	// worker's own group (so a Config literal is safe for an unprivileged
	// worker, which may not give the socket to group 0).
	DomainSocketGroup int
}

// DefaultConfig returns a Config with the default addresses and tuning; the
// caller adds MasterAddresses and Tiers.
func DefaultConfig() Config {
	return Config{
		Address:           DefaultAddress,
		WebAddress:        DefaultWebAddress,
		DataAddress:       DefaultDataAddress,
		AsyncCacheThreads: DefaultAsyncCacheThreads,
		HeartbeatInterval: DefaultHeartbeatInterval,
		DrainTimeout:      DefaultDrainTimeout,
		DomainSocketGroup: -1,
	}
}

func (c *Config) validate() error {
	if len(c.MasterAddresses) == 0 {
		return fmt.Errorf("%w: worker needs the master address", meta.ErrInvalidArgument)
	}
	if len(c.Tiers) == 0 {
		return fmt.Errorf("%w: worker needs at least one cache tier", meta.ErrInvalidArgument)
	}
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.AsyncCacheThreads <= 0 {
		c.AsyncCacheThreads = DefaultAsyncCacheThreads
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("get hostname for the node name: %w", err)
		}
		c.Node = h
	}
	return nil
}
