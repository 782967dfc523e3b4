package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/test/alcovetest"
)

const node = "node-a"

// cluster starts a real master and a worker on node in this process.
func cluster(t *testing.T) (masterAddr string) {
	t.Helper()
	return alcovetest.Start(t, node).MasterAddr
}

func newClient(t *testing.T, addr string, mod func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{MasterAddresses: []string{addr}, Node: node, BlockSize: 1 << 20}
	if mod != nil {
		mod(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

func put(t *testing.T, c *client.Client, p string, data []byte, wt apiv1.WriteType) {
	t.Helper()
	w, err := c.Create(context.Background(), p, client.WriteOptions{WriteType: wt, Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *client.Client, p string, rt apiv1.ReadType) ([]byte, *client.Reader) {
	t.Helper()
	r, err := c.OpenFile(context.Background(), p, rt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return got, r
}

func TestWriteTypesTimesReadTypes(t *testing.T) {
	c := newClient(t, cluster(t), nil)
	data := randBytes(1, 3<<20+12345)
	for _, wt := range []apiv1.WriteType{apiv1.WriteType_MUST_CACHE, apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_THROUGH, apiv1.WriteType_ASYNC_THROUGH} {
		for _, rt := range []apiv1.ReadType{apiv1.ReadType_CACHE, apiv1.ReadType_CACHE_PROMOTE, apiv1.ReadType_NO_CACHE} {
			p := "/rt/" + wt.String() + "/" + rt.String()
			put(t, c, p, data, wt)
			if got, _ := get(t, c, p, rt); !bytes.Equal(got, data) {
				t.Fatalf("%s: read back %d bytes that differ", p, len(got))
			}
		}
	}
}

func TestLocality(t *testing.T) {
	addr := cluster(t)
	data := randBytes(2, 5<<20+7)
	put(t, newClient(t, addr, nil), "/loc", data, apiv1.WriteType_MUST_CACHE)
	for _, tc := range []struct {
		name string
		mod  func(*client.Config)
		want func(*client.Reader) int64
	}{
		{"same node reads through the domain socket", nil, func(r *client.Reader) int64 { return r.Stats.ShortCircuit.Load() }},
		{"other node reads the data port", func(c *client.Config) { c.Node = "node-b" }, func(r *client.Reader) int64 { return r.Stats.Remote.Load() }},
		{"other node over gRPC", func(c *client.Config) { c.Node, c.DisableDataPort = "node-b", true }, func(r *client.Reader) int64 { return r.Stats.Remote.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, r := get(t, newClient(t, addr, tc.mod), "/loc", apiv1.ReadType_CACHE)
			if !bytes.Equal(got, data) {
				t.Fatal("bytes differ")
			}
			if n := tc.want(r); n != int64(len(data)) {
				t.Fatalf("%d of %d bytes came from the expected source (stats: sc %d, remote %d, ufs %d)", n, len(data),
					r.Stats.ShortCircuit.Load(), r.Stats.Remote.Load(), r.Stats.UFS.Load())
			}
		})
	}
}

func TestConcurrentReadAt(t *testing.T) {
	addr := cluster(t)
	data := randBytes(3, 4<<20+99)
	put(t, newClient(t, addr, nil), "/ra", data, apiv1.WriteType_CACHE_THROUGH)
	for _, mod := range []func(*client.Config){nil, func(c *client.Config) { c.Node = "node-b" }} {
		r, err := newClient(t, addr, mod).OpenFile(context.Background(), "/ra", apiv1.ReadType_CACHE)
		if err != nil {
			t.Fatal(err)
		}
		offs := make([][]int64, 8)
		for g := range offs {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 40 {
				offs[g] = append(offs[g], rng.Int64N(int64(len(data))))
			}
		}
		err = checkReadAt(r, data, 200<<10, offs)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkReadAt runs one goroutine per offsets[g], each calling ReadAt with
// a buffer of size at its offsets, and compares every result with data.
func checkReadAt(r *client.Reader, data []byte, size int, offsets [][]int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(offsets))
	for _, offs := range offsets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for _, off := range offs {
				n, err := r.ReadAt(buf, off)
				if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == int64(len(data))) {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("ReadAt at %d returned wrong bytes", off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func TestWriterErrors(t *testing.T) {
	c := newClient(t, cluster(t), nil)
	ctx := context.Background()
	put(t, c, "/exists", []byte("x"), apiv1.WriteType_MUST_CACHE)
	if _, err := c.Create(ctx, "/exists", client.WriteOptions{}); !errors.Is(err, meta.ErrAlreadyExists) {
		t.Fatalf("create over an existing file: %v, want ErrAlreadyExists", err)
	}
	w, err := c.Create(ctx, "/aborted", client.WriteOptions{WriteType: apiv1.WriteType_CACHE_THROUGH})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(randBytes(4, 3<<20))
	w.Abort()
	if _, err := c.GetStatus(ctx, "/aborted"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("aborted file: %v, want ErrNotFound", err)
	}
	if _, err := c.OpenFile(ctx, "/", apiv1.ReadType_CACHE); !errors.Is(err, meta.ErrIsDirectory) {
		t.Fatalf("open a directory: %v, want ErrIsDirectory", err)
	}
	if _, err := c.GetStatus(ctx, "/a/../../b"); !errors.Is(err, meta.ErrInvalidPath) {
		t.Fatalf("escaping path: %v, want ErrInvalidPath", err)
	}
}

func TestUnreachableMaster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, addr, func(c *client.Config) { c.RetryTimeout = 500 * time.Millisecond })
	start := time.Now()
	_, err = c.GetStatus(context.Background(), "/")
	if !errors.Is(err, meta.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach the master at "+addr) {
		t.Fatalf("err = %v, want Unavailable naming %s", err, addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v, want about the retry timeout", d)
	}
}

// A reader held open longer than its block token lives: the worker refuses
// the expired token (Unauthenticated), and the reader fetches fresh
// metadata and goes on, over the domain socket and over the network
// (SECURITY.md, "Data path: block tokens").
func TestExpiredBlockTokenRefreshed(t *testing.T) {
	const lifetime = 2 * time.Second
	addr := alcovetest.StartWith(t, alcovetest.Options{TokenLifetime: lifetime}, node).MasterAddr
	for _, tc := range []struct {
		name string
		mod  func(*client.Config)
	}{
		{"domain socket", nil},
		{"network", func(c *client.Config) { c.DisableShortCircuit = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, addr, tc.mod)
			p := "/expiry/" + strings.ReplaceAll(tc.name, " ", "-")
			data := randBytes(7, 3<<20)
			put(t, c, p, data, apiv1.WriteType_MUST_CACHE)
			ctx := context.Background()
			r, err := c.OpenFile(ctx, p, apiv1.ReadType_CACHE)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			opened := time.Now()
			first := make([]byte, 1<<20)
			if _, err := io.ReadFull(r, first); err != nil {
				t.Fatal(err)
			}
			// The token of the open expires lifetime after it was signed.
			time.Sleep(time.Until(opened.Add(lifetime + 500*time.Millisecond)))
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read after the block token expired: %v", err)
			}
			if !bytes.Equal(append(first, rest...), data) {
				t.Fatal("read after the block token expired: wrong bytes")
			}
		})
	}
}
