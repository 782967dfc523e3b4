package master

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

func (c *cluster) register(addr, node string, blocks ...*apiv1.WorkerBlock) int64 {
	c.t.Helper()
	return c.registerIn(c.clusterID(), addr, node, blocks...).WorkerId
}

// registerIn registers a worker whose cache was recorded for cluster.
func (c *cluster) registerIn(cluster, addr, node string, blocks ...*apiv1.WorkerBlock) *apiv1.RegisterWorkerResponse {
	c.t.Helper()
	r, err := c.block.RegisterWorker(c.ctx, &apiv1.RegisterWorkerRequest{
		Address: addr, Node: node, DomainSocket: "/run/" + node + ".sock", WebAddress: addr + "0",
		Tiers:     []*apiv1.TierInfo{{Alias: "MEM", CapacityBytes: 1 << 30, UsedBytes: 1 << 20}},
		Blocks:    blocks,
		ClusterId: cluster,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *cluster) clusterID() string {
	c.t.Helper()
	id, err := c.m.clusterID()
	if err != nil || id == "" {
		c.t.Fatalf("cluster id %q: %v", id, err)
	}
	return id
}

func (c *cluster) heartbeat(req *apiv1.HeartbeatRequest) *apiv1.HeartbeatResponse {
	c.t.Helper()
	r, err := c.block.Heartbeat(c.ctx, req)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *cluster) commit(worker int64, fi *apiv1.FileInfo, tier string) {
	c.t.Helper()
	for _, b := range fi.FileBlockInfos {
		if _, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: worker, BlockId: b.BlockInfo.BlockId, Length: b.BlockInfo.Length, Tier: tier}); err != nil {
			c.t.Fatal(err)
		}
	}
}

func TestBlockLocationsAndLostWorker(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.WorkerTimeout = 300 * time.Millisecond })
	fi := c.writeFile("/f", 2<<20+1, apiv1.WriteType_MUST_CACHE) // 3 blocks of 1 MiB
	w1 := c.register("10.0.0.1:29999", "node-a")
	w2 := c.register("10.0.0.2:29999", "node-b")
	if w1 == w2 || w1 == 0 {
		t.Fatalf("worker ids %d %d", w1, w2)
	}
	if again := c.register("10.0.0.1:29999", "node-a"); again != w1 {
		t.Fatalf("re-register by address got id %d, want %d", again, w1)
	}
	c.commit(w1, fi, "MEM")
	c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w2, AddedBlocks: []*apiv1.WorkerBlock{{BlockId: fi.BlockIds[0], Length: 1 << 20, Tier: "SSD"}}})

	got := c.stat("/f")
	if got.PersistenceState != apiv1.PersistenceState_NOT_PERSISTED || got.InAlcovePercentage != 100 {
		t.Fatalf("fully cached: %v %d%%", got.PersistenceState, got.InAlcovePercentage)
	}
	locs := got.FileBlockInfos[0].BlockInfo.Locations
	if len(locs) != 2 || locs[0].Tier != "MEM" || locs[0].WorkerId != w1 || locs[0].WorkerAddress != "10.0.0.1:29999" ||
		locs[0].Node != "node-a" || locs[0].DomainSocket != "/run/node-a.sock" || locs[1].Tier != "SSD" {
		t.Fatalf("locations: %v", locs)
	}
	if b := c.m.CachedBytesByNode(); b["node-a"] != 2<<20+1 || b["node-b"] != 1<<20 {
		t.Fatalf("cached bytes by node: %v", b)
	}

	// Worker 1 evicts the last block: only copy gone → LOST, percentage drops.
	hb := &apiv1.HeartbeatRequest{WorkerId: w1, RemovedBlockIds: []int64{fi.BlockIds[2]}}
	c.heartbeat(hb)
	got = c.stat("/f")
	if got.PersistenceState != apiv1.PersistenceState_LOST || got.InAlcovePercentage != 99 {
		t.Fatalf("evicted block: %v %d%%", got.PersistenceState, got.InAlcovePercentage)
	}
	if b := c.m.CachedBytesByNode(); b["node-a"] != 2<<20 {
		t.Fatalf("cached bytes after eviction: %v", b)
	}

	workers, err := c.meta.GetWorkers(c.ctx, &apiv1.GetWorkersRequest{})
	if err != nil || len(workers.Workers) != 2 || workers.Workers[0].State != apiv1.WorkerState_WORKER_LIVE || workers.Workers[0].BlockCount != 2 ||
		workers.Workers[0].Tiers[0].CapacityBytes != 1<<30 {
		t.Fatalf("workers: %v %v", workers, err)
	}

	// Worker 2 keeps heartbeating, worker 1 goes silent and is lost.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w2})
		info, err := c.meta.GetMasterInfo(c.ctx, &apiv1.GetMasterInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.LostWorkers == 1 && info.LiveWorkers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker never lost: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got = c.stat("/f")
	if len(got.FileBlockInfos[0].BlockInfo.Locations) != 1 || len(got.FileBlockInfos[1].BlockInfo.Locations) != 0 {
		t.Fatalf("lost worker's locations kept: %v", got.FileBlockInfos)
	}
	if b := c.m.CachedBytesByNode(); b["node-a"] != 0 || b["node-b"] != 1<<20 {
		t.Fatalf("cached bytes after loss: %v", b)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); !r.Register {
		t.Fatal("lost worker not asked to register")
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: 12345}); !r.Register {
		t.Fatal("unknown worker not asked to register")
	}
	wantCode(t, func() error {
		_, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: w1, BlockId: fi.BlockIds[0], Length: 1 << 20})
		return err
	}(), codes.FailedPrecondition, "commit from lost worker")

	// Re-registering with its previous id restores its blocks; blocks of
	// unknown files are sent back to be freed.
	orphan := meta.BlockID(999999, 0)
	resp := c.registerIn(c.clusterID(), "10.0.0.1:29999", "node-a",
		&apiv1.WorkerBlock{BlockId: fi.BlockIds[0], Length: 1 << 20, Tier: "MEM"},
		&apiv1.WorkerBlock{BlockId: fi.BlockIds[1], Length: 1 << 20, Tier: "MEM"},
		&apiv1.WorkerBlock{BlockId: fi.BlockIds[2], Length: 1, Tier: "MEM"},
		&apiv1.WorkerBlock{BlockId: orphan, Length: 1, Tier: "MEM"})
	if resp.WorkerId != w1 || !slices.Equal(resp.FreeBlockIds, []int64{orphan}) {
		t.Fatalf("re-register: id %d (want %d), refused %v (want the orphan)", resp.WorkerId, w1, resp.FreeBlockIds)
	}
	if got := c.stat("/f"); got.PersistenceState != apiv1.PersistenceState_NOT_PERSISTED || got.InAlcovePercentage != 100 {
		t.Fatalf("after re-register: %v %d%%", got.PersistenceState, got.InAlcovePercentage)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.FreeBlockIds) != 0 ||
		!slices.Contains(r.UnpersistedFileIds, fi.FileId) {
		t.Fatalf("heartbeat after re-register: %v", r)
	}
	wantCode(t, func() error {
		_, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: w1, BlockId: orphan, Length: 1})
		return err
	}(), codes.NotFound, "commit block of unknown file")

	// Deleting the file frees its blocks on every worker holding them.
	if _, err := c.fs.Delete(c.ctx, &apiv1.DeleteRequest{Path: "/f"}); err != nil {
		t.Fatal(err)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.FreeBlockIds) != 3 {
		t.Fatalf("free after delete on w1: %v", r.FreeBlockIds)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w2}); !slices.Equal(r.FreeBlockIds, []int64{fi.BlockIds[0]}) {
		t.Fatalf("free after delete on w2: %v", r.FreeBlockIds)
	}
	if b := c.m.CachedBytesByNode(); len(b) != 0 {
		t.Fatalf("cached bytes after delete: %v", b)
	}
}

func TestPersistCommandFlow(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.PersistRetryInterval = 400 * time.Millisecond })
	fi := c.writeFile("/async/f", 3<<20, apiv1.WriteType_ASYNC_THROUGH)
	if got := c.stat("/async/f"); got.PersistenceState != apiv1.PersistenceState_LOST {
		t.Fatalf("uncached async file: %v", got.PersistenceState)
	}
	w1 := c.register("w1:1", "n1")
	w2 := c.register("w2:1", "n2")
	// w2 holds only part of the file: no command.
	c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w2, AddedBlocks: []*apiv1.WorkerBlock{{BlockId: fi.BlockIds[0], Length: 1 << 20, Tier: "MEM"}}})
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w2}); len(r.Persist) != 0 || !slices.Equal(r.UnpersistedFileIds, []int64{fi.FileId}) {
		t.Fatalf("partial holder: %v", r)
	}
	c.commit(w1, fi, "MEM")
	if got := c.stat("/async/f"); got.PersistenceState != apiv1.PersistenceState_TO_BE_PERSISTED {
		t.Fatalf("cached async file: %v", got.PersistenceState)
	}
	r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1})
	if len(r.Persist) != 1 || r.Persist[0].FileId != fi.FileId || r.Persist[0].Path != "/async/f" ||
		r.Persist[0].UfsPath != c.ufs+"/async/f" || r.Persist[0].Length != 3<<20 || r.Persist[0].BlockSizeBytes != 1<<20 {
		t.Fatalf("persist command: %v", r.Persist)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.Persist) != 0 {
		t.Fatal("persist command re-issued immediately")
	}
	// A failed persist is retried after a backoff (250-500 ms after the
	// first failure), not at the very next heartbeat.
	failed := time.Now()
	if _, err := c.block.PersistDone(c.ctx, &apiv1.PersistDoneRequest{WorkerId: w1, FileId: fi.FileId, Error: "disk full"}); err != nil {
		t.Fatal(err)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.Persist) != 0 && time.Since(failed) < 250*time.Millisecond {
		t.Fatal("persist retried at once after a failure")
	}
	eventually(t, "persist retried after its backoff", 2*time.Second, func() bool {
		return len(c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}).Persist) == 1
	})
	// Without an answer, it is re-issued after the retry interval.
	time.Sleep(450 * time.Millisecond)
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.Persist) != 1 {
		t.Fatal("persist not re-issued after the retry interval")
	}
	// The worker writes the temporary object named in the command; a report
	// naming anything else is refused and moves nothing.
	tmp := r.Persist[0].UfsTempPath
	if !strings.HasPrefix(tmp, c.ufs+"/.alcove-tmp-persist-") {
		t.Fatalf("persist temporary object %q", tmp)
	}
	c.writeUFS(strings.TrimPrefix(tmp, c.ufs), 3<<20)
	for _, bad := range []string{"", c.ufs + "/async/f", c.ufs + "/../etc/passwd", c.ufs + "/.alcove-tmp-persist-999-0123456789abcdef", tmp + "0"} {
		_, err := c.block.PersistDone(c.ctx, &apiv1.PersistDoneRequest{WorkerId: w1, FileId: fi.FileId, UfsTempPath: bad})
		wantCode(t, err, codes.InvalidArgument, "persist done naming "+bad)
	}
	if got := c.stat("/async/f"); got.PersistenceState != apiv1.PersistenceState_TO_BE_PERSISTED || exists(c.ufs+"/async/f") {
		t.Fatalf("a refused persist report changed the file: %v", got.PersistenceState)
	}
	if _, err := c.block.PersistDone(c.ctx, &apiv1.PersistDoneRequest{WorkerId: w1, FileId: fi.FileId, UfsTempPath: tmp}); err != nil {
		t.Fatal(err)
	}
	if !exists(c.ufs+"/async/f") || exists(tmp) {
		t.Fatal("persist commit did not move the temporary object into place")
	}
	if _, err := c.block.PersistDone(c.ctx, &apiv1.PersistDoneRequest{WorkerId: w1, FileId: fi.FileId, UfsTempPath: tmp}); err != nil {
		t.Fatalf("repeated persist done: %v", err)
	}
	if got := c.stat("/async/f"); got.PersistenceState != apiv1.PersistenceState_PERSISTED || c.stat("/async").PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("after persist done: %v", got.PersistenceState)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w1}); len(r.Persist) != 0 || len(r.UnpersistedFileIds) != 0 {
		t.Fatalf("after persist: %v", r)
	}
	// The persist of a file deleted meanwhile drops the worker's object.
	gone := strings.Replace(tmp, fmt.Sprintf("-%d-", fi.FileId), "-424242-", 1)
	c.writeUFS(strings.TrimPrefix(gone, c.ufs), 10)
	if _, err := c.block.PersistDone(c.ctx, &apiv1.PersistDoneRequest{WorkerId: w1, FileId: 424242, UfsTempPath: gone}); err != nil || exists(gone) {
		t.Fatalf("persist done of a deleted file: %v, temporary object left: %v", err, exists(gone))
	}
	// An empty async file is persisted by the master itself.
	if e := c.writeFile("/async/empty", 0, apiv1.WriteType_ASYNC_THROUGH); e.PersistenceState != apiv1.PersistenceState_PERSISTED || !exists(c.ufs+"/async/empty") {
		t.Fatalf("empty async file: %v", e.PersistenceState)
	}
}

func TestFreeAndPin(t *testing.T) {
	c := newCluster(t)
	p := c.writeFile("/d/persisted", 2<<20, apiv1.WriteType_CACHE_THROUGH)
	mc := c.writeFile("/d2/cacheonly", 1<<20, apiv1.WriteType_MUST_CACHE)
	w := c.register("w:1", "n")
	c.commit(w, p, "MEM")
	c.commit(w, mc, "MEM")
	wantCode(t, func() error { _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d2", Recursive: true}); return err }(), codes.FailedPrecondition, "free unpersisted")
	if _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d2/cacheonly"}); err == nil || !strings.Contains(err.Error(), "not persisted: freeing would lose its data") {
		t.Fatalf("free unpersisted message: %v", err)
	}
	wantCode(t, func() error { _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d"}); return err }(), codes.FailedPrecondition, "free dir not recursive")

	if _, err := c.fs.SetAttribute(c.ctx, &apiv1.SetAttributeRequest{Path: "/d/persisted", Pinned: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if r := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w}); !slices.Equal(r.PinnedFileIds, []int64{p.FileId}) {
		t.Fatalf("pinned ids: %v", r.PinnedFileIds)
	}
	wantCode(t, func() error { _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d", Recursive: true}); return err }(), codes.FailedPrecondition, "free pinned")
	r, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d", Recursive: true, Force: true})
	if err != nil || r.FreedBlocks != 2 {
		t.Fatalf("forced free: %v %v", r, err)
	}
	got := c.stat("/d/persisted")
	if got.Pinned || got.InAlcovePercentage != 0 || got.PersistenceState != apiv1.PersistenceState_PERSISTED {
		t.Fatalf("after free: pinned %v %d%% %v", got.Pinned, got.InAlcovePercentage, got.PersistenceState)
	}
	hb := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w})
	if !slices.Equal(hb.FreeBlockIds, p.BlockIds) || len(hb.PinnedFileIds) != 0 {
		t.Fatalf("heartbeat after free: %v", hb)
	}

	// A block committed again while its free is queued (a load found it
	// still cached) stays: the free of the other block still goes out.
	c.commit(w, p, "MEM")
	if _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: w, BlockId: p.BlockIds[0], Length: 1 << 20, Tier: "MEM"}); err != nil {
		t.Fatal(err)
	}
	if hb := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w}); !slices.Equal(hb.FreeBlockIds, p.BlockIds[1:]) {
		t.Fatalf("free queued, then block %d committed again: heartbeat frees %v", p.BlockIds[0], hb.FreeBlockIds)
	}
	if got := c.stat("/d/persisted").InAlcovePercentage; got != 50 {
		t.Fatalf("after the re-commit: %d%% in Alcove, want 50", got)
	}

	// A heartbeat that reports as added a block whose free is queued (the
	// worker cached it before the free, and reports it only now) does not
	// list it again: a --nodes load planned meanwhile would count a copy
	// about to go (TestDistributedLoad lost blocks so).
	c.commit(w, p, "MEM")
	if _, err := c.fs.Free(c.ctx, &apiv1.FreeRequest{Path: "/d", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	stale := &apiv1.HeartbeatRequest{WorkerId: w}
	for _, id := range p.BlockIds {
		stale.AddedBlocks = append(stale.AddedBlocks, &apiv1.WorkerBlock{BlockId: id, Length: 1 << 20, Tier: "MEM"})
	}
	if hb := c.heartbeat(stale); !slices.Equal(hb.FreeBlockIds, p.BlockIds) {
		t.Fatalf("stale adds of blocks queued to free: heartbeat frees %v, want %v", hb.FreeBlockIds, p.BlockIds)
	}
	if got := c.stat("/d/persisted").InAlcovePercentage; got != 0 {
		t.Fatalf("after stale adds of freed blocks: %d%% in Alcove, want 0", got)
	}
}

func TestWebEndpoints(t *testing.T) {
	c := newCluster(t)
	c.writeFile("/x", 1, apiv1.WriteType_MUST_CACHE)
	c.register("w:1", "n")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + c.m.WebAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	for _, want := range []string{"alcove_master_inodes 2", "alcove_master_workers_live 1", `alcove_master_tier_capacity_bytes{tier="MEM"} 1.073741824e+09`,
		"alcove_master_rpc_duration_seconds_bucket", `method="/alcove.v1.FileSystemMaster/CreateFile"`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics (%d) lacks %q:\n%s", code, want, body)
		}
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "Alcove master") || !strings.Contains(body, c.ufs) {
		t.Fatalf("/: %d %s", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("/nope: %d", code)
	}
	if err := c.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.m.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
