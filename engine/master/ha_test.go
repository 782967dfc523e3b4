package master_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/test/alcovetest"
)

func dial(t *testing.T, addr string) *grpc.ClientConn { return dialB(t, addr) }

func dialB(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func withRequestID(ctx context.Context, seq uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, meta.RequestIDHeader, meta.FormatRequestID([]byte("test-client-0001"), seq))
}

// TestStandbyNamesLeader: a standby refuses with a NotLeader status whose
// details carry the leader's RPC address, and reports the leader.
func TestStandbyNamesLeader(t *testing.T) {
	g := alcovetest.StartGroup(t, 3)
	l := g.Leader(30 * time.Second)
	s := (l + 1) % 3
	ctx := context.Background()
	leaderAddr := g.Masters[l].AdvertisedAddr()
	fs := apiv1.NewFileSystemMasterClient(dial(t, g.Addrs()[s]))
	var err error
	for range 100 { // the standby learns the leader's address when it applies the leader's first entry
		_, err = fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: "/x"})
		var nl *meta.NotLeaderError
		if errors.As(meta.FromStatus(err), &nl) && nl.Leader == leaderAddr {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var nl *meta.NotLeaderError
	if status.Code(err) != codes.Unavailable || !errors.As(meta.FromStatus(err), &nl) || nl.Leader != leaderAddr {
		t.Fatalf("standby answered %v (code %v), want NotLeader naming %s", err, status.Code(err), leaderAddr)
	}
	info, err := apiv1.NewMetaMasterClient(dial(t, g.Addrs()[s])).GetMasterInfo(ctx, &apiv1.GetMasterInfoRequest{})
	if err != nil || info.GetIsLeader() || info.GetLeaderAddress() != leaderAddr || info.GetJournalId() != "m"+string(rune('0'+s)) {
		t.Fatalf("standby info %v, %v", info, err)
	}
	if _, err := apiv1.NewMetaMasterClient(dial(t, g.Addrs()[s])).GetMasterInfo(ctx, &apiv1.GetMasterInfoRequest{RequireLeader: true}); !errors.Is(meta.FromStatus(err), meta.ErrNotLeader) {
		t.Fatalf("standby with require_leader: %v", err)
	}
	q, err := apiv1.NewMetaMasterClient(dial(t, leaderAddr)).GetQuorumInfo(ctx, &apiv1.GetQuorumInfoRequest{})
	if err != nil || len(q.GetMembers()) != 3 || q.GetLeaderId() == "" {
		t.Fatalf("quorum info %v, %v", q, err)
	}
	for _, mb := range q.GetMembers() {
		if !mb.GetAvailable() || !mb.GetVoter() || mb.GetLeader() != (mb.GetId() == q.GetLeaderId()) {
			t.Errorf("quorum member %v", mb)
		}
	}
}

// TestExactlyOnce: a call retried with the same request id is applied once
// and returns the first result; a new id is a new call.
func TestExactlyOnce(t *testing.T) {
	g := alcovetest.StartGroup(t, 1)
	fs := apiv1.NewFileSystemMasterClient(dial(t, g.Addrs()[0]))
	ctx := context.Background()
	seq := uint64(0)
	twice := func(what string, call func(ctx context.Context) error) {
		t.Helper()
		seq++
		for attempt := range 2 {
			if err := call(withRequestID(ctx, seq)); err != nil {
				t.Fatalf("%s attempt %d: %v", what, attempt+1, err)
			}
		}
	}
	var ids []int64
	twice("create file", func(ctx context.Context) error {
		r, err := fs.CreateFile(ctx, &apiv1.CreateFileRequest{Path: "/f", WriteType: apiv1.WriteType_MUST_CACHE})
		ids = append(ids, r.GetFileInfo().GetFileId())
		return err
	})
	if ids[0] == 0 || ids[0] != ids[1] {
		t.Fatalf("retried create returned ids %v", ids)
	}
	twice("complete file", func(ctx context.Context) error {
		_, err := fs.CompleteFile(ctx, &apiv1.CompleteFileRequest{Path: "/f", FileId: ids[0]})
		return err
	})
	twice("create directory", func(ctx context.Context) error {
		_, err := fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: "/d", WriteType: apiv1.WriteType_MUST_CACHE})
		return err
	})
	twice("rename", func(ctx context.Context) error {
		_, err := fs.Rename(ctx, &apiv1.RenameRequest{Src: "/d", Dst: "/e"})
		return err
	})
	twice("set attribute", func(ctx context.Context) error {
		mode := uint32(0o700)
		_, err := fs.SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: "/e", Mode: &mode})
		return err
	})
	twice("delete", func(ctx context.Context) error {
		_, err := fs.Delete(ctx, &apiv1.DeleteRequest{Path: "/e"})
		return err
	})
	var links []int64
	twice("create symlink", func(ctx context.Context) error {
		r, err := fs.CreateSymlink(ctx, &apiv1.CreateSymlinkRequest{Path: "/l", Target: "f", WriteType: apiv1.WriteType_MUST_CACHE})
		links = append(links, r.GetFileInfo().GetFileId())
		return err
	})
	if links[0] == 0 || links[0] != links[1] {
		t.Fatalf("retried symlink returned ids %v", links)
	}
	twice("set times by file id", func(ctx context.Context) error {
		atime := int64(1_700_000_000_000)
		_, err := fs.SetAttribute(ctx, &apiv1.SetAttributeRequest{FileId: ids[0], AtimeMs: &atime, MtimeMs: &atime})
		return err
	})
	// An orphan's release is idempotent (ids are never reused): a retry
	// releases nothing and succeeds.
	twice("delete keeping an orphan", func(ctx context.Context) error {
		_, err := fs.Delete(ctx, &apiv1.DeleteRequest{Path: "/f", OrphanSession: "s1"})
		return err
	})
	var released []int32
	twice("release orphans", func(ctx context.Context) error {
		r, err := fs.ReleaseOrphans(ctx, &apiv1.ReleaseOrphansRequest{Session: "s1", FileIds: ids[:1]})
		released = append(released, r.GetReleased())
		return err
	})
	if released[0] != 1 || released[1] != 0 {
		t.Fatalf("released %v, want 1 then 0", released)
	}
	if _, err := fs.GetStatus(ctx, &apiv1.GetStatusRequest{FileId: ids[0]}); status.Code(err) != codes.NotFound {
		t.Fatalf("released orphan: %v", err)
	}
	if _, err := fs.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/e"}); status.Code(err) != codes.NotFound {
		t.Fatalf("/e after delete: %v", err)
	}
	// A new request id is a new call.
	_, err := fs.CreateFile(withRequestID(ctx, seq+1), &apiv1.CreateFileRequest{Path: "/l"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("create with a new id: %v, want AlreadyExists", err)
	}
	// A bad request id is refused.
	bad := metadata.AppendToOutgoingContext(ctx, meta.RequestIDHeader, "zz")
	if _, err := fs.CreateDirectory(bad, &apiv1.CreateDirectoryRequest{Path: "/g"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad request id: %v", err)
	}
}

// TestNewLeaderWaitsForWorkers: right after a fail-over a cache-only file's
// blocks are not lost, they are not registered yet: GetStatus waits for the
// worker to register with the new leader (bounded by the worker timeout).
func TestNewLeaderWaitsForWorkers(t *testing.T) {
	g := alcovetest.StartGroup(t, 3, func(c *master.Config) { c.WorkerTimeout = 3 * time.Second })
	ctx := context.Background()
	l := g.Leader(30 * time.Second)
	cc := dial(t, g.Addrs()[l])
	fs, bm := apiv1.NewFileSystemMasterClient(cc), apiv1.NewBlockMasterClient(cc)
	var blocks []*apiv1.WorkerBlock
	for _, p := range []string{"/cached", "/gone"} {
		r, err := fs.CreateFile(ctx, &apiv1.CreateFileRequest{Path: p, WriteType: apiv1.WriteType_MUST_CACHE, BlockSizeBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, &apiv1.WorkerBlock{BlockId: meta.BlockID(r.GetFileInfo().GetFileId(), 0), Length: 10, Tier: "MEM"})
		if _, err := fs.CompleteFile(ctx, &apiv1.CompleteFileRequest{Path: p, FileId: r.GetFileInfo().GetFileId(), Length: 10}); err != nil {
			t.Fatal(err)
		}
	}
	reg := &apiv1.RegisterWorkerRequest{Address: "127.0.0.1:1", Node: "n1", Tiers: []*apiv1.TierInfo{{Alias: "MEM", CapacityBytes: 1 << 30}}}
	first, err := bm.RegisterWorker(ctx, reg) // learns the cluster id, as a new worker does
	if err != nil {
		t.Fatal(err)
	}
	reg.ClusterId, reg.WorkerId, reg.Blocks = first.GetClusterId(), first.GetWorkerId(), blocks[:1]
	if _, err := bm.RegisterWorker(ctx, reg); err != nil {
		t.Fatal(err)
	}
	g.Stop(l)
	nl := g.Leader(30 * time.Second)
	cc = dial(t, g.Addrs()[nl])
	fs, bm = apiv1.NewFileSystemMasterClient(cc), apiv1.NewBlockMasterClient(cc)

	type result struct {
		fi  *apiv1.FileInfo
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		r, err := fs.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/cached"})
		got <- result{r.GetFileInfo(), err, time.Now()}
	}()
	select {
	case r := <-got:
		t.Fatalf("GetStatus did not wait for the worker: %v %v", r.fi, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	registered := time.Now()
	if _, err := bm.RegisterWorker(ctx, reg); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.fi.GetPersistenceState() == apiv1.PersistenceState_LOST || len(r.fi.GetFileBlockInfos()[0].GetBlockInfo().GetLocations()) != 1 {
		t.Fatalf("after the worker registered: %v %v", r.fi, r.err)
	}
	if d := r.at.Sub(registered); d > time.Second {
		t.Errorf("GetStatus answered %v after the worker registered", d)
	}
	// A block no worker reports is lost once the grace period is over.
	start := time.Now()
	gone, err := fs.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/gone"})
	if err != nil || gone.GetFileInfo().GetPersistenceState() != apiv1.PersistenceState_LOST {
		t.Fatalf("/gone: %v %v", gone, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("waited %v for a lost block, longer than the worker timeout", time.Since(start))
	}
}
