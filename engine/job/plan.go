package job

import (
	"fmt"
	"sort"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// candidate is a node that may receive block copies: it has a live job
// worker and a live filesystem worker, and the job allows it.
type candidate struct {
	node string
	free int64 // cache bytes free on its worker, less bytes assigned and not done
}

// blockCopy is one planned copy: block idx of file onto node.
type blockCopy struct {
	file *apiv1.FileInfo
	idx  int64
	node string
	req  *apiv1.CacheBlockRequest
}

// blockPlanInput is what planBlocks decides from.
type blockPlanInput struct {
	files       []*apiv1.FileInfo
	nodes       []candidate
	countOnly   map[string]bool // copies count only on these nodes (nil: on any node)
	replication int
	percent     int
	inflight    map[int64]map[string]bool // block id → nodes a task is caching it on
	skip        map[string]bool           // files not to plan now (failed, or waiting to retry)
}

// blockPlan is the outcome of one plan round.
type blockPlan struct {
	copies      []blockCopy
	bytesTotal  int64 // bytes of the complete files under the path
	target      int64 // bytes that must reach the replication
	done        int64 // bytes of blocks at the replication now
	filesTotal  int64
	filesDone   int64
	unloadable  map[string]string // file → why it can never be loaded
	unreachable string            // why the target cannot be planned with these nodes
}

// planBlocks decides which block copies to make next: blocks in path order
// until the bytes at (or on their way to) the replication reach the target
// percentage; each copy goes to an allowed node that does not hold the
// block, the one with the most free space. It is a pure function.
func planBlocks(in blockPlanInput) blockPlan {
	repl := max(in.replication, 1)
	pct := in.percent
	if pct <= 0 || pct > 100 {
		pct = 100
	}
	p := blockPlan{unloadable: map[string]string{}}
	free := make(map[string]int64, len(in.nodes))
	for _, n := range in.nodes {
		free[n.node] = n.free
	}
	type blk struct {
		file   *apiv1.FileInfo
		idx    int64
		length int64
		have   map[string]bool
	}
	var blocks []blk
	for _, f := range in.files {
		if f.GetFolder() || !f.GetCompleted() {
			continue
		}
		p.filesTotal++
		p.bytesTotal += f.GetLength()
		fileDone := true
		for i, fbi := range f.GetFileBlockInfos() {
			bi := fbi.GetBlockInfo()
			have := map[string]bool{}
			for _, l := range bi.GetLocations() {
				if in.countOnly == nil || in.countOnly[l.GetNode()] {
					have[l.GetNode()] = true
				}
			}
			if len(have) >= repl {
				p.done += bi.GetLength()
			} else {
				fileDone = false
			}
			blocks = append(blocks, blk{file: f, idx: int64(i), length: bi.GetLength(), have: have})
		}
		if fileDone {
			p.filesDone++
		}
	}
	p.target = (p.bytesTotal*int64(pct) + 99) / 100
	// Bytes at the replication or on their way there (tasks in flight).
	planned := int64(0)
	for _, b := range blocks {
		bid := b.file.GetFileBlockInfos()[b.idx].GetBlockInfo().GetBlockId()
		n := len(b.have)
		for node := range in.inflight[bid] {
			if !b.have[node] {
				n++
			}
		}
		if n >= repl {
			planned += b.length
		}
	}
	for _, b := range blocks {
		if planned >= p.target {
			break
		}
		bid := b.file.GetFileBlockInfos()[b.idx].GetBlockInfo().GetBlockId()
		busy := in.inflight[bid]
		n := len(b.have)
		for node := range busy {
			if !b.have[node] {
				n++
			}
		}
		if n >= repl {
			continue
		}
		path := b.file.GetPath()
		if in.skip[path] {
			continue
		}
		if b.file.GetPersistenceState() != apiv1.PersistenceState_PERSISTED && len(b.file.GetFileBlockInfos()[b.idx].GetBlockInfo().GetLocations()) == 0 {
			p.unloadable[path] = fmt.Sprintf("block %d has no cached copy and the file is not in the UFS (%s)", bid, meta.ErrDataLost)
			continue
		}
		if b.file.GetPersistenceState() != apiv1.PersistenceState_PERSISTED {
			// Only cached copies exist: a worker cannot read it from the UFS.
			p.unloadable[path] = "the file is not persisted: its blocks can only be copied from the UFS once it is (run `alcove fs persist`)"
			continue
		}
		nodes := make([]candidate, 0, len(in.nodes))
		for _, c := range in.nodes {
			if !b.have[c.node] && !busy[c.node] && free[c.node] >= b.length {
				nodes = append(nodes, candidate{node: c.node, free: free[c.node]})
			}
		}
		sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].free > nodes[j].free })
		added := 0
		for _, c := range nodes {
			if n+added >= repl {
				break
			}
			p.copies = append(p.copies, blockCopy{file: b.file, idx: b.idx, node: c.node, req: client.CacheBlockRequest(b.file, b.idx)})
			free[c.node] -= b.length
			added++
		}
		if n+added < repl && p.unreachable == "" {
			p.unreachable = fmt.Sprintf("replication %d needs %d nodes with room for block %d of %s; %d of the %d allowed nodes have it or room for it",
				repl, repl, bid, path, n+added, len(in.nodes))
		}
		if n+added >= repl {
			planned += b.length
		}
	}
	return p
}
