package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

func TestWriteThenReadPerWriteType(t *testing.T) {
	e := newEnv(t)
	data := randBytes(1, 5*testBS/2) // 2.5 blocks
	tests := []struct {
		wt                apiv1.WriteType
		cached, persisted bool
	}{
		{apiv1.WriteType_MUST_CACHE, true, false},
		{apiv1.WriteType_ASYNC_THROUGH, true, false},
		{apiv1.WriteType_CACHE_THROUGH, true, true},
		{apiv1.WriteType_THROUGH, false, true},
	}
	for i, tc := range tests {
		t.Run(tc.wt.String(), func(t *testing.T) {
			fileID := int64(100 + i)
			ufsPath := filepath.Join(e.ufsDir, tc.wt.String())
			resp, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: fileID, Path: "/f", UfsPath: ufsPath, BlockSizeBytes: testBS, WriteType: tc.wt}, data)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetLength() != int64(len(data)) || resp.GetPersisted() != tc.persisted {
				t.Fatalf("response %v", resp)
			}
			wantBlocks := 0
			if tc.cached {
				wantBlocks = 3
			}
			if len(resp.GetBlocks()) != wantBlocks {
				t.Fatalf("%d blocks cached, want %d", len(resp.GetBlocks()), wantBlocks)
			}
			for _, b := range resp.GetBlocks() {
				if !e.fm.committed(b.GetBlockId()) {
					t.Fatalf("block %d not committed to the master", b.GetBlockId())
				}
			}
			ufsData, err := os.ReadFile(ufsPath)
			if tc.persisted {
				equal(t, "UFS copy", ufsData, data)
			} else if !os.IsNotExist(err) {
				t.Fatalf("UFS file written for %v: %v", tc.wt, err)
			}
			equal(t, "read back", e.readFile(fileID, ufsPath, tc.persisted, int64(len(data)), apiv1.ReadType_CACHE), data)
		})
	}
}

func TestReadThroughFromUFS(t *testing.T) {
	e := newEnv(t)
	data := randBytes(2, 3*testBS)
	p := e.ufsFile("f", data)
	src := func(i int64) *apiv1.UfsBlockSource {
		return &apiv1.UfsBlockSource{UfsPath: "file://" + p, BlockOffset: i * testBS, Persisted: true}
	}
	// Full block, CACHE: cached while streaming, committed to the master.
	id0 := meta.BlockID(7, 0)
	got, err := e.read(&apiv1.ReadBlockRequest{BlockId: id0, Length: -1, BlockLength: testBS, BlockSizeBytes: testBS, ReadType: apiv1.ReadType_CACHE, Ufs: src(0)})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "full block", got, data[:testBS])
	if _, ok := e.w.store.Get(id0); !ok || !e.fm.committed(id0) {
		t.Fatal("full read-through did not cache and commit the block")
	}
	// Cached ranges at unaligned offsets, including a tail smaller than a page.
	for _, r := range [][2]int64{{5000, 70000}, {testBS - 100, -1}, {4095, 2 * DefaultChunkSize}} {
		got, err := e.read(&apiv1.ReadBlockRequest{BlockId: id0, Offset: r[0], Length: r[1], ChunkSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		end := int64(testBS)
		if r[1] >= 0 && r[0]+r[1] < end {
			end = r[0] + r[1]
		}
		equal(t, "cached range", got, data[r[0]:end])
	}
	// Partial read: served now, whole block cached asynchronously.
	id1 := meta.BlockID(7, 1)
	got, err = e.read(&apiv1.ReadBlockRequest{BlockId: id1, Offset: 1000, Length: 5000, BlockLength: testBS, BlockSizeBytes: testBS, ReadType: apiv1.ReadType_CACHE, Ufs: src(1)})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "partial block", got, data[testBS+1000:testBS+6000])
	eventually(t, "async cache of the partially read block", func() bool { return e.fm.committed(id1) })
	os.Remove(p) // from now on only the cache can answer
	got, err = e.read(&apiv1.ReadBlockRequest{BlockId: id1, Length: -1, BlockLength: testBS, BlockSizeBytes: testBS, Ufs: src(1)})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "asynchronously cached block", got, data[testBS:2*testBS])

	// NO_CACHE never caches, full or partial.
	e.ufsFile("f", data)
	id2 := meta.BlockID(7, 2)
	for _, off := range []int64{0, 10} {
		got, err = e.read(&apiv1.ReadBlockRequest{BlockId: id2, Offset: off, Length: -1, BlockLength: testBS, BlockSizeBytes: testBS, ReadType: apiv1.ReadType_NO_CACHE, Ufs: src(2)})
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "NO_CACHE read", got, data[2*testBS+off:])
	}
	// The full read tees into the cache before it returns and a partial
	// read queues its block (in flight until cached) before it returns: so
	// neither in the store nor in flight now means never, without waiting.
	e.w.cacher.mu.Lock()
	inflight := e.w.cacher.inflight[id2]
	e.w.cacher.mu.Unlock()
	if _, ok := e.w.store.Get(id2); ok || inflight {
		t.Fatalf("NO_CACHE read cached the block (cached %v, queued %v)", ok, inflight)
	}
}

func TestDataLost(t *testing.T) {
	e := newEnv(t)
	_, err := e.read(&apiv1.ReadBlockRequest{BlockId: meta.BlockID(9, 0), Length: -1, BlockLength: 10, BlockSizeBytes: testBS,
		Ufs: &apiv1.UfsBlockSource{UfsPath: "/nowhere", Persisted: false}})
	if !errors.Is(err, meta.ErrDataLost) || !strings.Contains(err.Error(), "never persisted") {
		t.Fatalf("miss of an unpersisted block: %v, want ErrDataLost", err)
	}
}

func TestShortCircuitRead(t *testing.T) {
	e := newEnv(t,
		blockstore.TierConfig{Alias: "MEM", Dir: t.TempDir(), QuotaBytes: 3 * testBS, HighWatermark: 1, LowWatermark: 1},
		blockstore.TierConfig{Alias: "SSD", Dir: t.TempDir(), QuotaBytes: 4 * testBS})
	data := randBytes(3, 2*testBS+77)
	ufsPath := filepath.Join(t.TempDir(), "sc")
	if _, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 11, Path: "/sc", UfsPath: ufsPath, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_CACHE_THROUGH}, data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := shortcircuit.Dial(ctx, e.w.cfg.DomainSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []byte
	for i := range int64(3) {
		b, err := c.Open(ctx, meta.BlockID(11, i), testBS, false, fileToken(11))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, b.Length)
		if _, err := b.File.ReadAt(buf, b.Offset); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		got = append(got, buf...)
		b.Close()
	}
	equal(t, "short-circuit read", got, data)
	if _, err := c.Open(ctx, meta.BlockID(12, 0), testBS, false, fileToken(12)); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("open of an uncached block: %v", err)
	}
	// A block in SSD is promoted before its fd is handed out.
	bw, err := e.w.store.CreateBlock(meta.BlockID(13, 0), testBS, 0)
	if err != nil || bw.Tier() != "SSD" {
		t.Fatalf("setup: %v, tier %s", err, bw.Tier())
	}
	bw.Write(data[:100])
	bw.Commit()
	b, err := c.Open(ctx, meta.BlockID(13, 0), testBS, true, fileToken(13))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Tier != "MEM" {
		t.Fatalf("promoted block served from %s", b.Tier)
	}
}

func TestEvictionUnderQuota(t *testing.T) {
	e := newEnv(t, blockstore.TierConfig{Alias: "MEM", Dir: t.TempDir(), QuotaBytes: 3 * testBS, HighWatermark: 1, LowWatermark: 1})
	a, b := randBytes(4, 2*testBS), randBytes(5, 2*testBS)
	pa, pb := filepath.Join(e.ufsDir, "a"), filepath.Join(e.ufsDir, "b")
	for i, f := range []struct {
		p string
		d []byte
	}{{pa, a}, {pb, b}} {
		if _, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: int64(20 + i), UfsPath: f.p, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_CACHE_THROUGH}, f.d); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := e.w.store.Get(meta.BlockID(20, 0)); ok || e.w.store.Evictions() != 1 {
		t.Fatalf("oldest block still cached or evictions = %d", e.w.store.Evictions())
	}
	eventually(t, "removal reported in a heartbeat", func() bool {
		e.fm.mu.Lock()
		defer e.fm.mu.Unlock()
		return e.fm.removed[meta.BlockID(20, 0)]
	})
	equal(t, "evicted file read through", e.readFile(20, pa, true, int64(len(a)), apiv1.ReadType_CACHE), a)

	// MUST_CACHE bigger than the cache fails with ResourceExhausted and leaves nothing.
	before := e.w.store.Blocks()
	_, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 30, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_MUST_CACHE}, randBytes(6, 4*testBS))
	if !errors.Is(err, meta.ErrNoSpace) {
		t.Fatalf("MUST_CACHE larger than the cache: %v, want ErrNoSpace", err)
	}
	for _, bl := range e.w.store.Blocks() {
		if meta.FileIDOf(bl.ID) == 30 {
			t.Fatalf("block %d of the failed write left in the cache (had %d blocks before)", bl.ID, len(before))
		}
	}
	// CACHE_THROUGH with a full cache keeps writing the UFS.
	e.w.store.SetPinned([]int64{20, 21})
	pc := filepath.Join(e.ufsDir, "c")
	big := randBytes(7, 3*testBS)
	resp, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 31, UfsPath: pc, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_CACHE_THROUGH}, big)
	if err != nil || !resp.GetPersisted() {
		t.Fatalf("CACHE_THROUGH into a full cache: %v %v", resp, err)
	}
	got, _ := os.ReadFile(pc)
	equal(t, "UFS copy with a full cache", got, big)
}

func TestAbortLeavesNothing(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(e.ufsDir, "aborted")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := e.client.WriteFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &apiv1.WriteFileHeader{FileId: 40, UfsPath: p, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_CACHE_THROUGH}
	h.BlockToken = writeToken(h)
	s.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Header{Header: h}})
	s.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Data{Data: randBytes(8, testBS+10)}})
	eventually(t, "the first block to land", func() bool { return e.fm.committed(meta.BlockID(40, 0)) })
	cancel()
	eventually(t, "the aborted write to be cleaned up", func() bool {
		ents, _ := os.ReadDir(e.ufsDir)
		return len(ents) == 0 && len(e.w.store.Blocks()) == 0 && e.w.store.Usage()[0].UsedBytes == 0
	})
	// An empty THROUGH write (a header, no data) still creates the file.
	_, err = e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 41, UfsPath: p, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_THROUGH}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("empty THROUGH file not created: %v", err)
	}
}

// A second header in a write stream is a protocol error: the write is
// refused with InvalidArgument and leaves nothing in the UFS or the cache.
func TestSecondHeaderAborts(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(e.ufsDir, "twice")
	s, err := e.client.WriteFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &apiv1.WriteFileHeader{FileId: 42, UfsPath: p, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_CACHE_THROUGH}
	h.BlockToken = writeToken(h)
	for i, m := range []*apiv1.WriteFileRequest{
		{Value: &apiv1.WriteFileRequest_Header{Header: h}},
		{Value: &apiv1.WriteFileRequest_Data{Data: randBytes(10, testBS+10)}},
		{Value: &apiv1.WriteFileRequest_Header{Header: h}},
	} {
		if err := s.Send(m); err != nil {
			t.Fatalf("send message %d: %v", i, err)
		}
	}
	if _, err := s.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "second header") {
		t.Fatalf("write with a second header: %v, want InvalidArgument naming the second header", err)
	}
	eventually(t, "the refused write to be cleaned up", func() bool {
		ents, _ := os.ReadDir(e.ufsDir)
		return len(ents) == 0 && len(e.w.store.Blocks()) == 0 && e.w.store.Usage()[0].UsedBytes == 0
	})
}

func TestPersistCommand(t *testing.T) {
	e := newEnv(t)
	data := randBytes(9, 2*testBS+5)
	if _, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 50, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_ASYNC_THROUGH}, data); err != nil {
		t.Fatal(err)
	}
	// The worker writes the temporary object the master names; the master
	// moves it into place (engine/master commitPersist).
	final := filepath.Join(e.ufsDir, "sub", "persisted")
	p := filepath.Join(e.ufsDir, ".alcove-tmp-persist-50-00000000000000aa")
	e.fm.queue(&apiv1.HeartbeatResponse{Persist: []*apiv1.PersistCommand{{FileId: 50, Path: "/p", UfsPath: final, UfsTempPath: p, Length: int64(len(data)), BlockSizeBytes: testBS, Mode: 0o600}}})
	eventually(t, "PersistDone", func() bool {
		e.fm.mu.Lock()
		defer e.fm.mu.Unlock()
		return len(e.fm.persistDone) > 0
	})
	e.fm.mu.Lock()
	done := e.fm.persistDone[0]
	e.fm.mu.Unlock()
	if done.GetError() != "" || done.GetFileId() != 50 || done.GetWorkerId() != 42 || done.GetUfsTempPath() != p {
		t.Fatalf("PersistDone = %v", done)
	}
	got, _ := os.ReadFile(p)
	equal(t, "persisted UFS file", got, data)
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Fatalf("the worker wrote the final UFS path itself (%v); only the master may move the object there", err)
	}

	// Persisting a file whose blocks are not here reports the error.
	e.fm.queue(&apiv1.HeartbeatResponse{Persist: []*apiv1.PersistCommand{{FileId: 51, UfsPath: final + "2", UfsTempPath: p + "2", Length: 10, BlockSizeBytes: testBS}}})
	eventually(t, "failed PersistDone", func() bool {
		e.fm.mu.Lock()
		defer e.fm.mu.Unlock()
		return len(e.fm.persistDone) > 1
	})
	if e.fm.persistDone[1].GetError() == "" {
		t.Fatal("persist of an uncached file reported success")
	}
	if _, err := os.Stat(p + "2"); !os.IsNotExist(err) {
		t.Fatal("failed persist left a UFS file")
	}
}

func TestHeartbeatCommandsAndWeb(t *testing.T) {
	e := newEnv(t)
	data := randBytes(10, testBS)
	e.write(context.Background(), &apiv1.WriteFileHeader{FileId: 60, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_MUST_CACHE}, data)
	e.fm.queue(&apiv1.HeartbeatResponse{FreeBlockIds: []int64{meta.BlockID(60, 0)}})
	eventually(t, "free_block_ids applied", func() bool { _, ok := e.w.store.Get(meta.BlockID(60, 0)); return !ok })
	e.fm.queue(&apiv1.HeartbeatResponse{Register: true})
	eventually(t, "re-registration", func() bool {
		e.fm.mu.Lock()
		defer e.fm.mu.Unlock()
		return len(e.fm.registers) >= 2
	})
	e.fm.mu.Lock()
	reg := e.fm.registers[0]
	e.fm.mu.Unlock()
	if reg.GetAddress() != e.w.Addr() || reg.GetDomainSocket() == "" || len(reg.GetTiers()) != 1 || e.w.ID() != 42 {
		t.Fatalf("registration %v (addr %s)", reg, e.w.Addr())
	}

	resp, err := http.Get("http://" + e.w.WebAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"alcove_worker_bytes_written_cache_total 1.048576e+06", "alcove_worker_tier_capacity_bytes{tier=\"MEM\"}",
		"alcove_worker_bytes_read_domain_socket_total", "alcove_worker_evictions_total", "alcove_worker_rpc_duration_seconds"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	resp, err = http.Get("http://" + e.w.WebAddr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestMasterLateStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w, err := New(Config{MasterAddresses: []string{addr}, Address: "127.0.0.1:0", HeartbeatInterval: 20 * time.Millisecond,
		Tiers: []blockstore.TierConfig{{Alias: "MEM", Dir: t.TempDir(), QuotaBytes: testBS}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.ID() != 0 {
		t.Fatal("registered without a master")
	}
	startFakeMaster(t, addr)
	eventually(t, "registration once the master is up", func() bool { return w.ID() == 42 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestUFSPathOutsideMount: a worker takes a UFS location only within the
// mount the master describes; a client naming another path is refused.
func TestUFSPathOutsideMount(t *testing.T) {
	e := newEnv(t)
	inside := e.ufsFile("in", []byte("inside"))
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fm.mu.Lock()
	e.fm.mounts = map[int64]string{7: "file://" + e.ufsDir}
	e.fm.mu.Unlock()
	read := func(p string, id int64) ([]byte, error) {
		return e.read(&apiv1.ReadBlockRequest{BlockId: meta.BlockID(id, 0), Length: -1, BlockLength: 6, BlockSizeBytes: testBS,
			ReadType: apiv1.ReadType_NO_CACHE, Ufs: &apiv1.UfsBlockSource{UfsPath: p, MountId: 7, Persisted: true}})
	}
	if b, err := read(inside, 70); err != nil || string(b) != "inside" {
		t.Fatalf("read inside the mount: %q, %v", b, err)
	}
	for _, p := range []string{outside, e.ufsDir + "/../" + filepath.Base(filepath.Dir(outside)) + "/secret"} {
		if b, err := read(p, 71); !errors.Is(err, meta.ErrPermission) {
			t.Fatalf("read of %s outside the mount: %q, %v; want ErrPermission", p, b, err)
		}
	}
}

// A load of a block the worker still holds while the master's free of it
// is queued: the heartbeat carrying the free was computed before the
// load re-reported the block, so applying it would drop a block the
// master now lists here (TestDistributedLoad's `free` then `--nodes n2`
// ended with blocks nowhere).
func TestLoadCancelsQueuedFree(t *testing.T) {
	e := newEnv(t)
	const fileID = 61
	data := randBytes(11, testBS)
	e.write(context.Background(), &apiv1.WriteFileHeader{FileId: fileID, BlockSizeBytes: testBS, WriteType: apiv1.WriteType_MUST_CACHE}, data)
	id := meta.BlockID(fileID, 0)
	src := &apiv1.UfsBlockSource{UfsPath: "/f", Persisted: true}
	tok := signToken(security.Scope{FileID: fileID, Access: security.AccessRead, UfsPath: src.UfsPath, BlockSize: testBS})

	e.fm.mu.Lock()
	delete(e.fm.commits, id)
	e.fm.pending = append(e.fm.pending, &apiv1.HeartbeatResponse{FreeBlockIds: []int64{id}})
	loaded := make(chan error, 1)
	e.fm.beforeReply = func() {
		resp, err := e.client.CacheBlock(context.Background(), &apiv1.CacheBlockRequest{
			BlockId: id, BlockLength: testBS, BlockSizeBytes: testBS, Ufs: src, BlockToken: tok})
		if err == nil && !resp.GetAlreadyCached() {
			err = fmt.Errorf("CacheBlock of a held block: not already cached")
		}
		loaded <- err
	}
	e.fm.mu.Unlock()
	if err := <-loaded; err != nil {
		t.Fatal(err)
	}
	if !e.fm.committed(id) {
		t.Fatal("CacheBlock of a block the master did not list did not report it again")
	}
	beats := func() int { e.fm.mu.Lock(); defer e.fm.mu.Unlock(); return e.fm.heartbeats }
	after := beats() + 1 // the heartbeat with the free has been answered once this one arrives
	eventually(t, "a heartbeat after the free", func() bool { return beats() > after })
	if _, ok := e.w.store.Get(id); !ok {
		t.Fatal("a free computed before the block was reported again removed it")
	}
}

// TestFreeGuard: a heartbeat's free list never removes a block a load found
// cached and is reporting again (the race of TestDistributedLoad: the free
// applied between the load's look and its commit), and a free applied
// before the look makes the load see the block gone.
func TestFreeGuard(t *testing.T) {
	const id = 7
	for _, tc := range []struct {
		name        string
		run         func(g *freeGuard, present *bool) bool // reports whether the load held the block
		wantRemoved bool
	}{
		{"free arrives while the commit is on its way", func(g *freeGuard, present *bool) bool {
			sent := g.sending()
			held, done := g.holding(id, func() bool { return *present })
			g.apply([]int64{id}, sent, func(int64) { *present = false })
			g.committed(id)
			done()
			g.apply([]int64{id}, sent, func(int64) { *present = false })
			return held
		}, false},
		{"free applied before the look", func(g *freeGuard, present *bool) bool {
			sent := g.sending()
			g.apply([]int64{id}, sent, func(int64) { *present = false })
			held, _ := g.holding(id, func() bool { return *present })
			return held
		}, true},
		{"a free the master sent after the commit", func(g *freeGuard, present *bool) bool {
			held, done := g.holding(id, func() bool { return *present })
			g.committed(id)
			done()
			g.apply([]int64{id}, g.sending(), func(int64) { *present = false })
			return held
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g freeGuard
			present := true
			held := tc.run(&g, &present)
			if removed := !present; removed != tc.wantRemoved {
				t.Fatalf("removed %v, want %v", removed, tc.wantRemoved)
			}
			if tc.wantRemoved && tc.name == "free applied before the look" && held {
				t.Fatal("the load held a block the free had removed")
			}
		})
	}
}
