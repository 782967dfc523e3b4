package master

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

type cluster struct {
	t     *testing.T
	m     *Master
	dir   string
	ufs   string
	conn  *grpc.ClientConn
	fs    apiv1.FileSystemMasterClient
	meta  apiv1.MetaMasterClient
	block apiv1.BlockMasterClient
	ctx   context.Context
}

type option func(*Config)

func startMaster(t *testing.T, dir, ufsDir string, opts ...option) *cluster {
	t.Helper()
	cfg := Config{
		Dir: dir, Address: "127.0.0.1:0", WebAddress: "127.0.0.1:0", RootUFS: ufsDir,
		WorkerTimeout: 5 * time.Second, TTLCheckInterval: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(m.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, m: m, dir: dir, ufs: ufsDir, conn: conn, ctx: ctx,
		fs: apiv1.NewFileSystemMasterClient(conn), meta: apiv1.NewMetaMasterClient(conn), block: apiv1.NewBlockMasterClient(conn)}
	t.Cleanup(func() { c.close() })
	return c
}

func newCluster(t *testing.T, opts ...option) *cluster {
	return startMaster(t, t.TempDir(), t.TempDir(), opts...)
}

func (c *cluster) close() {
	c.t.Helper()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	if err := c.m.Close(); err != nil {
		c.t.Errorf("close master: %v", err)
	}
}

// restart closes the master and starts a new one on the same directories.
func (c *cluster) restart(opts ...option) *cluster {
	c.t.Helper()
	c.close()
	return startMaster(c.t, c.dir, c.ufs, opts...)
}

func code(err error) codes.Code { return status.Code(err) }

func wantCode(t *testing.T, err error, want codes.Code, what string) {
	t.Helper()
	if code(err) != want {
		t.Fatalf("%s: got %v (%v), want %v", what, code(err), err, want)
	}
}

func (c *cluster) stat(p string) *apiv1.FileInfo {
	c.t.Helper()
	r, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: p})
	if err != nil {
		c.t.Fatalf("stat %s: %v", p, err)
	}
	return r.FileInfo
}

func (c *cluster) mkdir(p string) *apiv1.FileInfo {
	c.t.Helper()
	r, err := c.fs.CreateDirectory(c.ctx, &apiv1.CreateDirectoryRequest{Path: p, Recursive: true})
	if err != nil {
		c.t.Fatalf("mkdir %s: %v", p, err)
	}
	return r.FileInfo
}

// writeFile creates and completes a file as a client would, with the given
// write type; persisted files are also written into the UFS.
func (c *cluster) writeFile(p string, length int64, wt apiv1.WriteType) *apiv1.FileInfo {
	c.t.Helper()
	r, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: p, WriteType: wt, Recursive: true, BlockSizeBytes: 1 << 20})
	if err != nil {
		c.t.Fatalf("create %s: %v", p, err)
	}
	persisted := wt == apiv1.WriteType_THROUGH || wt == apiv1.WriteType_CACHE_THROUGH
	if persisted {
		c.writeUFS(p, length)
	}
	done, err := c.fs.CompleteFile(c.ctx, &apiv1.CompleteFileRequest{Path: p, FileId: r.FileInfo.FileId, Length: length, Persisted: persisted})
	if err != nil {
		c.t.Fatalf("complete %s: %v", p, err)
	}
	return done.FileInfo
}

func (c *cluster) writeUFS(p string, length int64) {
	c.t.Helper()
	full := filepath.Join(c.ufs, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(full, make([]byte, length), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) ls(p string, sync bool) map[string]*apiv1.FileInfo {
	c.t.Helper()
	r, err := c.fs.ListStatus(c.ctx, &apiv1.ListStatusRequest{Path: p, SyncUfs: sync})
	if err != nil {
		c.t.Fatalf("ls %s: %v", p, err)
	}
	out := map[string]*apiv1.FileInfo{}
	for _, fi := range r.FileInfos {
		out[fi.Name] = fi
	}
	return out
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
