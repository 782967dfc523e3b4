package worker

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// fakeMaster is an in-test BlockMaster on a real gRPC server: it records
// what the worker tells it and hands out queued heartbeat responses. The
// real master (engine/master) is built separately.
type fakeMaster struct {
	apiv1.UnimplementedBlockMasterServer
	addr string

	mu          sync.Mutex
	registers   []*apiv1.RegisterWorkerRequest
	heartbeats  int
	commits     map[int64]*apiv1.CommitBlockRequest
	removed     map[int64]bool
	persistDone []*apiv1.PersistDoneRequest
	pending     []*apiv1.HeartbeatResponse // returned by the next heartbeats, in order
	beforeReply func()                     // if set, runs (once, unlocked) before a queued heartbeat response is returned
	mounts      map[int64]string           // mount id → UFS URI (default: every id is file:///)
}

func startFakeMaster(t testing.TB, addr string) *fakeMaster {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fm := &fakeMaster{addr: ln.Addr().String(), commits: map[int64]*apiv1.CommitBlockRequest{}, removed: map[int64]bool{}}
	srv := grpc.NewServer()
	apiv1.RegisterBlockMasterServer(srv, fm)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return fm
}

func (m *fakeMaster) RegisterWorker(_ context.Context, req *apiv1.RegisterWorkerRequest) (*apiv1.RegisterWorkerResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registers = append(m.registers, req)
	return &apiv1.RegisterWorkerResponse{WorkerId: 42, BlockTokenKeys: security.KeysToProto(testSigner.Keys())}, nil
}

func (m *fakeMaster) Heartbeat(_ context.Context, req *apiv1.HeartbeatRequest) (*apiv1.HeartbeatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeats++
	for _, id := range req.GetRemovedBlockIds() {
		m.removed[id] = true
	}
	if len(m.pending) == 0 {
		return &apiv1.HeartbeatResponse{BlockTokenKeys: security.KeysToProto(testSigner.Keys())}, nil
	}
	resp := m.pending[0]
	m.pending = m.pending[1:]
	if hook := m.beforeReply; hook != nil {
		m.beforeReply = nil
		m.mu.Unlock()
		hook()
		m.mu.Lock()
	}
	return resp, nil
}

func (m *fakeMaster) CommitBlock(_ context.Context, req *apiv1.CommitBlockRequest) (*apiv1.CommitBlockResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commits[req.GetBlockId()] = req
	return &apiv1.CommitBlockResponse{}, nil
}

func (m *fakeMaster) PersistDone(_ context.Context, req *apiv1.PersistDoneRequest) (*apiv1.PersistDoneResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.persistDone = append(m.persistDone, req)
	return &apiv1.PersistDoneResponse{}, nil
}

// GetMountConfig answers a mount id with its UFS URI (default file:///).
func (m *fakeMaster) GetMountConfig(_ context.Context, req *apiv1.GetMountConfigRequest) (*apiv1.GetMountConfigResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	uri := "file:///"
	if u, ok := m.mounts[req.GetMountId()]; ok {
		uri = u
	}
	return &apiv1.GetMountConfigResponse{Mount: &apiv1.MountPointInfo{AlcovePath: "/", UfsUri: uri, MountId: req.GetMountId()}}, nil
}

func (m *fakeMaster) queue(resp *apiv1.HeartbeatResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = append(m.pending, resp)
}

func (m *fakeMaster) committed(id int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.commits[id] != nil
}

// testSigner signs the block tokens of this package's tests; the fake
// master hands its keys to workers as the real master does.
var testSigner = func() *security.Signer {
	s, err := security.NewSigner(time.Hour)
	if err != nil {
		panic(err)
	}
	return s
}()

func signToken(s security.Scope) []byte {
	tok, err := testSigner.Sign(s)
	if err != nil {
		panic(err)
	}
	return tok
}

// readToken is the token the master would hand out for req's file.
func readToken(req *apiv1.ReadBlockRequest) []byte {
	return signToken(security.Scope{FileID: meta.FileIDOf(req.GetBlockId()), Access: security.AccessRead,
		MountID: req.GetUfs().GetMountId(), UfsPath: req.GetUfs().GetUfsPath(), BlockSize: req.GetBlockSizeBytes()})
}

// fileToken is a read token for cached blocks of a file.
func fileToken(fileID int64) []byte {
	return signToken(security.Scope{FileID: fileID, Access: security.AccessRead})
}

// writeToken is the token CreateFile would return for h's file.
func writeToken(h *apiv1.WriteFileHeader) []byte {
	return signToken(security.Scope{FileID: h.GetFileId(), Access: security.AccessRead | security.AccessWrite,
		MountID: h.GetMountId(), UfsPath: h.GetUfsPath(), BlockSize: h.GetBlockSizeBytes()})
}
