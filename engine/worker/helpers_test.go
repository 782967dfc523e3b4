package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
)

const testBS = 1 << 20 // block size of test files

type env struct {
	t      testing.TB
	w      *Worker
	fm     *fakeMaster
	client apiv1.BlockWorkerClient
	ufsDir string
}

func newEnv(t testing.TB, tiers ...blockstore.TierConfig) *env {
	t.Helper()
	if len(tiers) == 0 {
		tiers = []blockstore.TierConfig{{Alias: "MEM", Dir: t.TempDir(), QuotaBytes: 64 * testBS}}
	}
	fm := startFakeMaster(t, "127.0.0.1:0")
	w, err := New(Config{
		MasterAddresses:   []string{fm.addr},
		Address:           "127.0.0.1:0",
		WebAddress:        "127.0.0.1:0",
		DomainSocket:      filepath.Join(t.TempDir(), "w.sock"),
		DataAddress:       "127.0.0.1:0",
		Tiers:             tiers,
		HeartbeatInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	conn, err := grpc.NewClient(w.Addr(), append(clientDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{t: t, w: w, fm: fm, client: apiv1.NewBlockWorkerClient(conn), ufsDir: t.TempDir()}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// write sends a file in 300 KiB chunks.
func (e *env) write(ctx context.Context, h *apiv1.WriteFileHeader, data []byte) (*apiv1.WriteFileResponse, error) {
	if h.BlockToken == nil {
		h.BlockToken = writeToken(h)
	}
	s, err := e.client.WriteFile(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Header{Header: h}}); err != nil {
		return nil, err
	}
	for len(data) > 0 {
		n := min(len(data), 300<<10)
		if err := s.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Data{Data: data[:n]}}); err != nil {
			break // the server failed: CloseAndRecv returns why
		}
		data = data[n:]
	}
	resp, err := s.CloseAndRecv()
	return resp, meta.FromStatus(err)
}

func (e *env) read(req *apiv1.ReadBlockRequest) ([]byte, error) {
	if req.BlockToken == nil {
		req.BlockToken = readToken(req)
	}
	s, err := e.client.ReadBlock(context.Background(), req)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, meta.FromStatus(err)
		}
		out = append(out, c.GetData()...)
	}
}

// ufsFile writes a UFS file and returns its path.
func (e *env) ufsFile(name string, data []byte) string {
	p := filepath.Join(e.ufsDir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// readFile reads a whole file block by block through ReadBlock.
func (e *env) readFile(fileID int64, ufsPath string, persisted bool, length int64, rt apiv1.ReadType) []byte {
	e.t.Helper()
	var out []byte
	for i := range meta.BlockCount(length, testBS) {
		blen := meta.BlockLength(length, testBS, i)
		b, err := e.read(&apiv1.ReadBlockRequest{BlockId: meta.BlockID(fileID, i), Length: -1, BlockLength: blen, BlockSizeBytes: testBS, ReadType: rt,
			Ufs: &apiv1.UfsBlockSource{UfsPath: ufsPath, BlockOffset: i * testBS, Persisted: persisted}})
		if err != nil {
			e.t.Fatalf("read block %d: %v", i, err)
		}
		out = append(out, b...)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func equal(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d (contents differ)", what, len(got), len(want))
	}
}
