package master

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// A worker's cache is accepted block by block only when each block fits its
// file, and not at all when it was recorded for another cluster.
func TestRegisterRefusesBlocksThatDoNotFit(t *testing.T) {
	c := newCluster(t)
	done := c.writeFile("/done", 2<<20+1, apiv1.WriteType_MUST_CACHE) // blocks of 1 MiB, 1 MiB, 1 B
	open, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/open", BlockSizeBytes: 1 << 20, WriteType: apiv1.WriteType_MUST_CACHE})
	if err != nil {
		t.Fatal(err)
	}
	openID := open.FileInfo.FileId
	b := func(id, n int64) *apiv1.WorkerBlock { return &apiv1.WorkerBlock{BlockId: id, Length: n, Tier: "MEM"} }
	tests := []struct {
		name   string
		block  *apiv1.WorkerBlock
		accept bool
	}{
		{"full block of a complete file", b(done.BlockIds[0], 1<<20), true},
		{"last block, exact length", b(done.BlockIds[2], 1), true},
		{"last block, wrong length", b(done.BlockIds[2], 1<<20), false},
		{"short middle block", b(done.BlockIds[1], 1000), false},
		{"index past the block count", b(meta.BlockID(done.FileId, 3), 1), false},
		{"file being written, up to the block size", b(meta.BlockID(openID, 7), 1<<20), true},
		{"file being written, over the block size", b(meta.BlockID(openID, 0), 1<<20+1), false},
		{"unknown file", b(meta.BlockID(424242, 0), 1), false},
		{"a directory's id", b(meta.BlockID(c.mkdir("/d").FileId, 0), 1), false},
		{"empty block", b(meta.BlockID(openID, 1), 0), false},
	}
	var all []*apiv1.WorkerBlock
	var wantRefused []int64
	for _, tc := range tests {
		all = append(all, tc.block)
		if !tc.accept {
			wantRefused = append(wantRefused, tc.block.BlockId)
		}
	}
	slices.Sort(wantRefused)
	resp := c.registerIn(c.clusterID(), "10.0.0.1:29999", "node-a", all...)
	refused := slices.Sorted(slices.Values(resp.FreeBlockIds))
	if !slices.Equal(refused, wantRefused) {
		for _, tc := range tests {
			if slices.Contains(refused, tc.block.BlockId) == tc.accept {
				t.Errorf("%s: accepted %v, want %v", tc.name, !tc.accept, tc.accept)
			}
		}
	}
	if resp.ClusterId != c.clusterID() {
		t.Fatalf("response cluster id %q", resp.ClusterId)
	}

	// A wrong length through CommitBlock is refused too.
	wantCode(t, func() error {
		_, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: resp.WorkerId, BlockId: done.BlockIds[2], Length: 2})
		return err
	}(), codes.InvalidArgument, "commit of a block of the wrong length")

	// A cache of another cluster: nothing accepted, the master's id returned.
	other := c.registerIn("another-cluster", "10.0.0.2:29999", "node-b", b(done.BlockIds[0], 1<<20))
	if other.ClusterId != c.clusterID() || len(other.FreeBlockIds) != 0 {
		t.Fatalf("foreign cache: response %v", other)
	}
	if locs := c.stat("/done").FileBlockInfos[0].BlockInfo.Locations; len(locs) != 1 || locs[0].Node != "node-a" {
		t.Fatalf("block 0 locations %v, want only node-a", locs)
	}
}

// The cluster id is minted once, kept across restarts and changed by a
// reformat (a new store).
func TestClusterIDAcrossRestartAndFormat(t *testing.T) {
	c := newCluster(t)
	id := c.clusterID()
	c = c.restart()
	if got := c.clusterID(); got != id {
		t.Fatalf("cluster id after restart %q, want %q", got, id)
	}
	fresh := newCluster(t)
	if fresh.clusterID() == id {
		t.Fatal("a new store reused the cluster id")
	}
}

func TestReplicaTargetsAndReReplication(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.WorkerTimeout = 300 * time.Millisecond })
	r, err := c.fs.CreateFile(c.ctx, &apiv1.CreateFileRequest{Path: "/a", BlockSizeBytes: 1 << 20, WriteType: apiv1.WriteType_ASYNC_THROUGH, ReplicationDurable: 2})
	if err != nil {
		t.Fatal(err)
	}
	blk := meta.BlockID(r.FileInfo.FileId, 0)
	wa := c.register("10.0.0.1:1", "node-a")
	wb := c.register("10.0.0.2:1", "node-b")
	wb2 := c.register("10.0.0.3:1", "node-b")
	wc := c.register("10.0.0.4:1", "node-c")
	commit := func(w int64, want bool) *apiv1.CommitBlockResponse {
		t.Helper()
		resp, err := c.block.CommitBlock(c.ctx, &apiv1.CommitBlockRequest{WorkerId: w, BlockId: blk, Length: 1 << 20, Tier: "MEM", WantReplicas: want})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := commit(wa, true)
	if resp.ReplicasNeeded != 1 || len(resp.ReplicaTargets) != 3 {
		t.Fatalf("replicas needed %d, targets %v", resp.ReplicasNeeded, resp.ReplicaTargets)
	}
	if resp.ReplicaTargets[0].Node == "node-a" || resp.ReplicaTargets[2].Node == "node-a" {
		t.Fatalf("targets %v include the writer's node", resp.ReplicaTargets)
	}
	commit(wb, false)
	if resp := commit(wa, true); resp.ReplicasNeeded != 0 {
		t.Fatalf("block at durable copies still needs %d", resp.ReplicasNeeded)
	}

	// node-a's worker stops heartbeating: its copy is lost, and a holder's
	// next heartbeat is told to push the block to a node without a copy.
	var cmds []*apiv1.ReplicateCommand
	eventually(t, "a re-replication command", 5*time.Second, func() bool {
		for _, w := range []int64{wb2, wc} {
			if got := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: w}).Replicate; len(got) > 0 {
				t.Fatalf("worker %d holds no copy but was told to push %v", w, got)
			}
		}
		cmds = c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wb}).Replicate
		return len(cmds) == 1
	})
	if cmds[0].BlockId != blk || cmds[0].Targets[0].Node != "node-c" {
		t.Fatalf("command %v: want block %d to node-c first", cmds[0], blk)
	}
	if again := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wb}).Replicate; len(again) != 0 {
		t.Fatalf("command re-issued while in flight: %v", again)
	}
	commit(wc, false) // the push arrived
	if again := c.heartbeat(&apiv1.HeartbeatRequest{WorkerId: wb}).Replicate; len(again) != 0 {
		t.Fatalf("command issued for a block at its durable copies: %v", again)
	}
}
