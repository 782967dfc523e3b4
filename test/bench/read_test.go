// Package bench measures Alcove's read paths against baselines taken in the
// same run: short-circuit (domain-socket fd) reads vs reading the same bytes
// straight from tmpfs, and remote gRPC reads vs a raw TCP loopback stream.
// Run it with `make bench` (hack/bench-read.sh); it is skipped otherwise.
package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/worker"
)

const readBuf = 4 << 20

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// best returns the highest of the measured rates (least disturbed run).
func best(rates []float64) float64 {
	sort.Float64s(rates)
	return rates[len(rates)-1]
}

func measure(t *testing.T, reps int, size int64, fn func() (int64, error)) float64 {
	t.Helper()
	var rates []float64
	for i := 0; i < reps; i++ {
		start := time.Now()
		n, err := fn()
		if err != nil {
			t.Fatal(err)
		}
		if n != size {
			t.Fatalf("read %d bytes, want %d", n, size)
		}
		rates = append(rates, float64(n)/time.Since(start).Seconds()/1e9)
	}
	return best(rates)
}

func drain(r io.Reader) (int64, error) {
	buf := make([]byte, readBuf)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// tcpBaseline streams size bytes over a loopback TCP connection, 1 MiB writes.
func tcpBaseline(size int64) (int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for sent := int64(0); sent < size; sent += int64(len(buf)) {
			if _, err := c.Write(buf[:min(int64(len(buf)), size-sent)]); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return drain(c)
}

// sendfileBaseline streams a file over loopback TCP with sendfile: the best
// a raw server can do when the bytes live in a (tmpfs) file, as cached
// blocks do.
func sendfileBaseline(path string, size int64) (int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		c.(*net.TCPConn).ReadFrom(io.LimitReader(f, size)) // sendfile(2) under the hood
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return drain(c)
}

func TestReadThroughput(t *testing.T) {
	if os.Getenv("ALCOVE_BENCH") == "" {
		t.Skip("set ALCOVE_BENCH=1 (make bench) to run the read benchmark")
	}
	size := int64(envInt("ALCOVE_BENCH_MB", 1024)) << 20
	reps := envInt("ALCOVE_BENCH_REPS", 3)
	ctx := context.Background()
	shm, err := os.MkdirTemp("/dev/shm", "alcove-bench-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shm)
	dir := t.TempDir()

	// The baseline file: the same bytes, straight on tmpfs.
	raw := filepath.Join(shm, "raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{7}), size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	local, remote, remoteGRPC := benchCluster(t, ctx, filepath.Join(dir, "plain"), filepath.Join(shm, "plain"), raw, size, nil)
	// The same cluster with mTLS between every component (the raw data
	// port runs over TLS too), to measure what TLS costs.
	var tlsRemote, tlsGRPC *client.Client
	if os.Getenv("ALCOVE_BENCH_TLS") != "0" {
		certs := filepath.Join(dir, "tls")
		if err := security.EnsureLocal(certs, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		_, tlsRemote, tlsGRPC = benchCluster(t, ctx, filepath.Join(dir, "tlscluster"), filepath.Join(shm, "tls"), raw, size, func(r security.Role) *security.Source {
			s, err := security.Load(filepath.Join(certs, string(r)), r)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	}

	// readAlcove reads the file with Read calls into a 4 MiB buffer, or with
	// io.Copy (the Reader's WriteTo: what cat and copyToLocal use).
	readAlcove := func(c *client.Client, check func(*client.Reader) error, viaCopy ...bool) func() (int64, error) {
		return func() (int64, error) {
			r, err := c.OpenFile(ctx, "/bench", apiv1.ReadType_CACHE)
			if err != nil {
				return 0, err
			}
			defer r.Close()
			var n int64
			if len(viaCopy) > 0 {
				n, err = io.Copy(io.Discard, r)
			} else {
				n, err = drain(r)
			}
			if err == nil {
				err = check(r)
			}
			return n, err
		}
	}
	tmpfs := measure(t, reps, size, func() (int64, error) {
		f, err := os.Open(raw)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return drain(f)
	})
	sc := measure(t, reps, size, readAlcove(local, func(r *client.Reader) error {
		if r.Stats.ShortCircuit.Load() != size {
			return fmt.Errorf("short-circuit bytes %d of %d: the read did not use the domain socket", r.Stats.ShortCircuit.Load(), size)
		}
		return nil
	}))
	tcp := measure(t, reps, size, func() (int64, error) { return tcpBaseline(size) })
	tcpFile := measure(t, reps, size, func() (int64, error) { return sendfileBaseline(raw, size) })
	isRemote := func(r *client.Reader) error {
		if r.Stats.Remote.Load() != size {
			return fmt.Errorf("remote bytes %d of %d: the read did not come from the worker's cache", r.Stats.Remote.Load(), size)
		}
		return nil
	}
	dataPort := measure(t, reps, size, readAlcove(remote, isRemote))
	dataPortCopy := measure(t, reps, size, readAlcove(remote, isRemote, true))
	grpc := measure(t, reps, size, readAlcove(remoteGRPC, isRemote))
	fmt.Printf("\nRead throughput, %d MiB cached file, best of %d (GB/s = 1e9 B/s)\n", size>>20, reps)
	fmt.Printf("  %-40s %6.2f GB/s\n", "tmpfs read (baseline)", tmpfs)
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f (target >= 0.8)\n", "short-circuit (domain-socket fd)", sc, sc/tmpfs)
	fmt.Printf("  %-40s %6.2f GB/s\n", "raw TCP stream from memory (baseline)", tcp)
	fmt.Printf("  %-40s %6.2f GB/s\n", "raw TCP stream of the tmpfs file", tcpFile)
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f to memory (target >= 0.8), %.2f to file\n", "remote worker (data port), Read calls", dataPort, dataPort/tcp, dataPort/tcpFile)
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f to memory (target >= 0.8), %.2f to file\n", "remote worker (data port), io.Copy", dataPortCopy, dataPortCopy/tcp, dataPortCopy/tcpFile)
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f to memory, %.2f to file\n", "remote worker (gRPC ReadBlock fallback)", grpc, grpc/tcp, grpc/tcpFile)
	if tlsRemote == nil {
		return
	}
	tlsCopy := measure(t, reps, size, readAlcove(tlsRemote, isRemote, true))
	tlsG := measure(t, reps, size, readAlcove(tlsGRPC, isRemote))
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f to memory, %.2f to plaintext\n", "remote, data port over TLS, io.Copy", tlsCopy, tlsCopy/tcp, tlsCopy/dataPortCopy)
	fmt.Printf("  %-40s %6.2f GB/s  ratio %.2f to memory, %.2f to plaintext\n", "remote, gRPC ReadBlock over mTLS", tlsG, tlsG/tcp, tlsG/grpc)
}

// benchCluster starts a master and a worker (MEM tier under shm), writes
// raw's bytes to /bench from a client on the worker's node, and returns
// that client and two "other node" clients (data port, gRPC only). certs,
// when set, gives each component its certificate (mTLS everywhere).
func benchCluster(t *testing.T, ctx context.Context, dir, shm, raw string, size int64, certs func(security.Role) *security.Source) (local, remote, remoteGRPC *client.Client) {
	t.Helper()
	cert := func(r security.Role) *security.Source {
		if certs == nil {
			return nil
		}
		return certs(r)
	}
	m, err := master.New(master.Config{Dir: filepath.Join(dir, "master"), Address: "127.0.0.1:0", RootUFS: filepath.Join(dir, "ufs"), TLS: cert(security.RoleMaster)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "ufs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	w, err := worker.New(worker.Config{
		MasterAddresses: []string{m.Addr()}, Address: "127.0.0.1:0", DataAddress: "127.0.0.1:0", Node: "bench-node",
		DomainSocket: filepath.Join(dir, "sock"), DomainSocketGroup: -1, TLS: cert(security.RoleWorker),
		Tiers: []blockstore.TierConfig{{Alias: "MEM", Dir: filepath.Join(shm, "mem"), QuotaBytes: size + 256<<20}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	newClient := func(cfg client.Config) *client.Client {
		cfg.MasterAddresses, cfg.TLS = []string{m.Addr()}, cert(security.RoleClient)
		c, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	local = newClient(client.Config{Node: "bench-node", WriteType: apiv1.WriteType_MUST_CACHE})
	remote = newClient(client.Config{Node: "other-node", DisableShortCircuit: true})
	remoteGRPC = newClient(client.Config{Node: "other-node", DisableShortCircuit: true, DisableDataPort: true})
	src, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	wr, err := local.Create(ctx, "/bench", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wr.ReadFrom(src); err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
	return local, remote, remoteGRPC
}
