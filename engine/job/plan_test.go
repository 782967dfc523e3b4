package job

import (
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// file makes a persisted file of n one-MiB blocks; locs[i] lists the nodes
// caching block i.
func file(id int64, n int, locs ...[]string) *apiv1.FileInfo {
	f := &apiv1.FileInfo{FileId: id, Path: fmt.Sprintf("/f%d", id), Length: int64(n) << 20, BlockSizeBytes: 1 << 20,
		Completed: true, PersistenceState: apiv1.PersistenceState_PERSISTED}
	for i := range n {
		bi := &apiv1.BlockInfo{BlockId: id<<20 | int64(i), Length: 1 << 20}
		if i < len(locs) {
			for _, node := range locs[i] {
				bi.Locations = append(bi.Locations, &apiv1.BlockLocation{Node: node})
			}
		}
		f.FileBlockInfos = append(f.FileBlockInfos, &apiv1.FileBlockInfo{BlockInfo: bi, Offset: int64(i) << 20})
	}
	return f
}

func TestPlanBlocks(t *testing.T) {
	two := []candidate{{node: "a", free: 100 << 20}, {node: "b", free: 200 << 20}}
	lost := file(9, 1)
	lost.PersistenceState = apiv1.PersistenceState_NOT_PERSISTED
	for _, tc := range []struct {
		name        string
		in          blockPlanInput
		wantCopies  string // "block@node ..." in plan order
		wantDone    int64
		unreachable bool
		unloadable  int
	}{
		{name: "all blocks, most free node first, then the other as it fills",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 2)}, nodes: []candidate{{node: "a", free: 1 << 20}, {node: "b", free: 1 << 20}}},
			wantCopies: "1048576@a 1048577@b"},
		{name: "cached blocks count",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 3, []string{"a"})}, nodes: two},
			wantCopies: "1048577@b 1048578@b", wantDone: 1 << 20},
		{name: "percent stops once the target is planned",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 10)}, nodes: two, percent: 30},
			wantCopies: "1048576@b 1048577@b 1048578@b"},
		{name: "in-flight copies count toward the target",
			in: blockPlanInput{files: []*apiv1.FileInfo{file(1, 4)}, nodes: two, percent: 50,
				inflight: map[int64]map[string]bool{1 << 20: {"a": true}}},
			wantCopies: "1048577@b"},
		{name: "replication on distinct nodes",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 1, []string{"a"})}, nodes: two, replication: 2},
			wantCopies: "1048576@b"},
		{name: "replication beyond the nodes is unreachable",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 1)}, nodes: two, replication: 3},
			wantCopies: "1048576@b 1048576@a", unreachable: true},
		{name: "copies on other nodes do not count when nodes are chosen",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 1, []string{"c"})}, nodes: two[:1], countOnly: map[string]bool{"a": true}},
			wantCopies: "1048576@a"},
		{name: "skipped files wait",
			in:         blockPlanInput{files: []*apiv1.FileInfo{file(1, 1), file(2, 1)}, nodes: two, skip: map[string]bool{"/f1": true}},
			wantCopies: "2097152@b"},
		{name: "a file with no copy and no UFS copy cannot load",
			in:         blockPlanInput{files: []*apiv1.FileInfo{lost}, nodes: two},
			unloadable: 1},
		{name: "no room anywhere",
			in:          blockPlanInput{files: []*apiv1.FileInfo{file(1, 1)}, nodes: []candidate{{node: "a", free: 1}}},
			unreachable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planBlocks(tc.in)
			var got []string
			for _, c := range p.copies {
				got = append(got, fmt.Sprintf("%d@%s", c.req.GetBlockId(), c.node))
			}
			if strings.Join(got, " ") != tc.wantCopies {
				t.Errorf("copies %q, want %q", strings.Join(got, " "), tc.wantCopies)
			}
			if p.done != tc.wantDone {
				t.Errorf("done %d, want %d", p.done, tc.wantDone)
			}
			if (p.unreachable != "") != tc.unreachable {
				t.Errorf("unreachable %q", p.unreachable)
			}
			if len(p.unloadable) != tc.unloadable {
				t.Errorf("unloadable %v", p.unloadable)
			}
		})
	}
}

func TestPickTask(t *testing.T) {
	mk := func(node, prefer string) *task { return &task{pb: &apiv1.JobTask{Node: node}, prefer: prefer} }
	pending := []*task{mk("b", ""), mk("", ""), mk("", "a"), mk("a", "")}
	for _, tc := range []struct {
		node string
		want int
	}{{"a", 2}, {"b", 0}, {"c", 1}} {
		if got := pickTask(pending, tc.node); got != tc.want {
			t.Errorf("pickTask for %s = %d, want %d", tc.node, got, tc.want)
		}
	}
	if got := pickTask([]*task{mk("b", "")}, "a"); got != -1 {
		t.Errorf("pickTask of another node's task = %d", got)
	}
}
