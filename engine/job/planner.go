package job

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// planState is what a plan round reads from the scheduler, copied under
// its lock so that the filesystem calls run without it.
type planState struct {
	spec      *apiv1.JobSpec
	skip      map[string]bool // failed, or waiting to retry
	waiting   bool            // some file waits to be retried
	blockBusy map[int64]map[string]bool
	fileBusy  map[string]bool
	done      map[string]bool
	inflight  int
	workers   []*apiv1.RegisterJobWorkerRequest
	reserved  map[string]int64 // bytes of block tasks in flight per node
	prepared  bool
}

// planResult is what a plan round hands back.
type planResult struct {
	tasks      []*task
	update     func(info *apiv1.JobInfo) // progress figures
	unloadable map[string]string
	finish     apiv1.JobState // JOB_STATE_UNSPECIFIED: keep running
	message    string
	prepared   bool
}

// plan runs one plan round of job id.
func (s *scheduler) plan(ctx context.Context, id int64) {
	now := time.Now()
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil || j.info.GetState() != apiv1.JobState_JOB_RUNNING {
		s.mu.Unlock()
		return
	}
	j.planned, j.replan = now, false
	st := planState{spec: j.info.GetSpec(), skip: map[string]bool{}, blockBusy: map[int64]map[string]bool{}, fileBusy: map[string]bool{},
		done: maps.Clone(j.done), inflight: len(j.inflight), reserved: map[string]int64{}, prepared: j.prepared}
	for p := range j.failed {
		st.skip[p] = true
	}
	for p, at := range j.retryAt {
		if now.Before(at) {
			st.skip[p] = true
			st.waiting = true
		}
	}
	for _, t := range j.inflight {
		if b := t.pb.GetBlock(); b != nil {
			if st.blockBusy[b.GetBlockId()] == nil {
				st.blockBusy[b.GetBlockId()] = map[string]bool{}
			}
			st.blockBusy[b.GetBlockId()][t.pb.GetNode()] = true
		} else {
			st.fileBusy[t.file] = true
		}
	}
	for _, w := range s.workers {
		st.workers = append(st.workers, w.req)
		for _, t := range w.inflight {
			st.reserved[t.pb.GetNode()] += t.bytes
		}
	}
	s.mu.Unlock()

	var res planResult
	var err error
	switch st.spec.GetType() {
	case apiv1.JobType_LOAD, apiv1.JobType_REPLICATE:
		res, err = s.planLoad(ctx, st)
	default:
		res, err = s.planFiles(ctx, st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.info.GetState() != apiv1.JobState_JOB_RUNNING {
		return // canceled meanwhile
	}
	if err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			s.finishLocked(j, apiv1.JobState_JOB_FAILED, err.Error())
			return
		}
		s.logger.Error(err, "Plan round failed; trying again", "job", id)
		j.info.Message = "waiting: " + err.Error()
		j.dirty = true
		return
	}
	for p, why := range res.unloadable {
		j.failed[p] = &apiv1.FailedFile{Path: p, Error: why, Attempts: j.tries[p]}
	}
	if res.update != nil {
		res.update(j.info)
	}
	j.prepared = j.prepared || res.prepared
	j.info.UpdateTimeMs = now.UnixMilli()
	j.dirty = true
	if res.finish != apiv1.JobState_JOB_STATE_UNSPECIFIED {
		if len(j.inflight) == 0 {
			s.finishLocked(j, res.finish, withFailures(res.message, j.failed))
		}
		return
	}
	j.info.Message = res.message
	// Tasks that started while the plan ran were not in its picture: drop
	// the plan's tasks for the same file or block (another copy of a block
	// that just got one would overshoot the target).
	busy := map[string]bool{}
	for _, t := range j.inflight {
		busy[taskKey(t)] = true
		if b := t.pb.GetBlock(); b != nil && !t.started.Before(now) {
			busy[fmt.Sprint(b.GetBlockId())] = true
		}
	}
	j.pending = j.pending[:0]
	for _, t := range res.tasks {
		if busy[taskKey(t)] || (t.pb.GetBlock() != nil && busy[fmt.Sprint(t.pb.GetBlock().GetBlockId())]) {
			continue
		}
		s.nextID++
		t.pb.TaskId, t.pb.JobId = s.nextID, id
		j.pending = append(j.pending, t)
	}
}

func taskKey(t *task) string {
	if b := t.pb.GetBlock(); b != nil {
		return fmt.Sprintf("%d@%s", b.GetBlockId(), t.pb.GetNode())
	}
	return t.file
}

// listFiles lists path recursively (a file lists as itself).
func (s *scheduler) listFiles(ctx context.Context, p string) (*apiv1.FileInfo, []*apiv1.FileInfo, error) {
	root, err := s.fs.GetStatus(ctx, p)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", p, err)
	}
	if !root.GetFolder() {
		return root, []*apiv1.FileInfo{root}, nil
	}
	infos, err := s.fs.ListStatus(ctx, p, true, false)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", p, err)
	}
	return root, infos, nil
}

// candidates are the nodes a block job may cache on: a live job worker
// and a live filesystem worker there, allowed by the spec's nodes and
// node selector. countOnly is nil when every node's copies count.
func (s *scheduler) candidates(ctx context.Context, st planState) ([]candidate, map[string]bool, error) {
	ws, err := s.fs.LiveWorkers(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list workers: %w", err)
	}
	free := map[string]int64{}
	for _, w := range ws {
		var f int64
		for _, t := range w.GetTiers() {
			f += t.GetCapacityBytes() - t.GetUsedBytes()
		}
		free[w.GetNode()] += f
	}
	spec := st.spec
	var countOnly map[string]bool
	if len(spec.GetNodes()) > 0 || len(spec.GetNodeSelector()) > 0 {
		countOnly = map[string]bool{}
	}
	allowedByName := func(n string) bool {
		return len(spec.GetNodes()) == 0 || slices.Contains(spec.GetNodes(), n)
	}
	seen := map[string]bool{}
	var out []candidate
	for _, w := range st.workers {
		n := w.GetNode()
		if !allowedByName(n) || !labelsMatch(w.GetLabels(), spec.GetNodeSelector()) {
			continue
		}
		if countOnly != nil {
			countOnly[n] = true
		}
		if f, ok := free[n]; ok && !seen[n] {
			seen[n] = true
			out = append(out, candidate{node: n, free: f - st.reserved[n]})
		}
	}
	if countOnly != nil && len(spec.GetNodeSelector()) == 0 {
		for _, n := range spec.GetNodes() {
			countOnly[n] = true
		}
	}
	slices.SortFunc(out, func(a, b candidate) int { return strings.Compare(a.node, b.node) })
	return out, countOnly, nil
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (s *scheduler) planLoad(ctx context.Context, st planState) (planResult, error) {
	_, files, err := s.listFiles(ctx, st.spec.GetPath())
	if err != nil {
		return planResult{}, err
	}
	nodes, countOnly, err := s.candidates(ctx, st)
	if err != nil {
		return planResult{}, err
	}
	repl := int(st.spec.GetReplication())
	p := planBlocks(blockPlanInput{files: files, nodes: nodes, countOnly: countOnly, replication: repl,
		percent: int(st.spec.GetPercent()), inflight: st.blockBusy, skip: st.skip})
	res := planResult{unloadable: p.unloadable}
	res.update = func(info *apiv1.JobInfo) {
		info.FilesTotal, info.FilesDone = p.filesTotal, p.filesDone
		info.BytesTotal, info.BytesDone = p.target, min(p.done, p.target)
		info.Percent = 100
		if p.target > 0 {
			info.Percent = int32(min(p.done, p.target) * 100 / p.target)
		}
	}
	for _, c := range p.copies {
		res.tasks = append(res.tasks, &task{file: c.file.GetPath(), bytes: c.req.GetBlockLength(),
			pb: &apiv1.JobTask{Type: st.spec.GetType(), Path: c.file.GetPath(), Block: c.req, Node: c.node}})
	}
	standing := st.spec.GetType() == apiv1.JobType_REPLICATE
	switch {
	case standing:
		res.message = fmt.Sprintf("keeping %d copies of every block", max(repl, 1))
		if p.unreachable != "" {
			res.message = "waiting: " + p.unreachable
		}
	case p.done >= p.target:
		res.finish, res.message = apiv1.JobState_JOB_COMPLETED, "target reached"
	case len(res.tasks) > 0 || st.inflight > 0 || st.waiting:
		res.message = ""
	case len(nodes) == 0:
		res.message = "waiting for a job worker on an allowed node"
	case p.unreachable != "":
		res.finish, res.message = apiv1.JobState_JOB_FAILED, p.unreachable
	default:
		res.finish = apiv1.JobState_JOB_FAILED
	}
	return res, nil
}

// dstOf maps a source file to its destination for COPY and MOVE.
func dstOf(spec *apiv1.JobSpec, root *apiv1.FileInfo, p string) string {
	if !root.GetFolder() {
		return spec.GetDst()
	}
	rel := strings.TrimPrefix(p, strings.TrimSuffix(root.GetPath(), "/"))
	return path.Join(spec.GetDst(), rel)
}

func (s *scheduler) planFiles(ctx context.Context, st planState) (planResult, error) {
	spec := st.spec
	root, files, err := s.listFiles(ctx, spec.GetPath())
	if err != nil && !(errors.Is(err, meta.ErrNotFound) && spec.GetType() == apiv1.JobType_MOVE && len(st.done) > 0) {
		return planResult{}, err
	}
	res := planResult{unloadable: map[string]string{}, prepared: st.prepared}
	copying := spec.GetType() == apiv1.JobType_COPY || spec.GetType() == apiv1.JobType_MOVE
	if copying && !st.prepared && root != nil {
		for _, f := range append([]*apiv1.FileInfo{root}, files...) {
			if f.GetFolder() {
				if _, err := s.fs.Mkdir(ctx, dstOf(spec, root, f.GetPath()), true, true, f.GetMode()); err != nil {
					return planResult{}, fmt.Errorf("create destination directory: %w", err)
				}
			}
		}
		res.prepared = true
	}
	var total, bytesLeft int64
	for _, f := range files {
		if f.GetFolder() {
			continue
		}
		p := f.GetPath()
		if st.done[p] {
			continue
		}
		total++
		bytesLeft += f.GetLength()
		if spec.GetType() == apiv1.JobType_PERSIST {
			switch {
			case f.GetPersistenceState() == apiv1.PersistenceState_PERSISTED:
				total--
				bytesLeft -= f.GetLength()
				st.done[p] = true
				continue
			case f.GetPersistenceState() == apiv1.PersistenceState_LOST:
				res.unloadable[p] = "a block of it has no cached copy left, so it cannot be written to the UFS (" + meta.ErrDataLost.Error() + ")"
				continue
			case !f.GetCompleted():
				st.waiting = true // still being written
				continue
			}
		}
		if st.skip[p] || st.fileBusy[p] {
			continue
		}
		t := &task{file: p, bytes: f.GetLength(), pb: &apiv1.JobTask{Type: spec.GetType(), Path: p, Force: spec.GetForce(),
			WriteType: spec.GetWriteType(), Overwrite: spec.GetOverwrite(), TimeoutMs: spec.GetPersistTimeoutMs()}}
		if copying {
			t.pb.Dst = dstOf(spec, root, p)
			t.prefer = mostCached(f)
		}
		res.tasks = append(res.tasks, t)
	}
	done := int64(len(st.done))
	res.update = func(info *apiv1.JobInfo) {
		info.FilesTotal = done + total
		info.FilesDone = done
		info.BytesTotal = info.GetBytesDone() + bytesLeft
		info.Percent = 100
		if info.FilesTotal > 0 {
			info.Percent = int32(info.FilesDone * 100 / info.FilesTotal)
		}
	}
	if len(res.tasks) > 0 || st.inflight > 0 || st.waiting {
		return res, nil
	}
	if len(st.skip) > 0 || len(res.unloadable) > 0 {
		res.finish = apiv1.JobState_JOB_FAILED
		return res, nil
	}
	if spec.GetType() == apiv1.JobType_MOVE && root != nil && root.GetFolder() {
		// Every file moved: the source tree holds only directories now.
		if err := s.fs.Delete(ctx, spec.GetPath(), true, false); err != nil && !errors.Is(err, meta.ErrNotFound) {
			return planResult{}, fmt.Errorf("delete moved source %s: %w", spec.GetPath(), err)
		}
	}
	res.finish, res.message = apiv1.JobState_JOB_COMPLETED, ""
	return res, nil
}

// withFailures appends the files that failed, by name, to a job's message.
func withFailures(msg string, failed map[string]*apiv1.FailedFile) string {
	if len(failed) == 0 {
		return msg
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d file(s) failed:", len(failed))
	for i, f := range failedList(failed) {
		if i == 10 {
			fmt.Fprintf(&b, " ... and %d more (alcove job stat shows all)", len(failed)-10)
			break
		}
		fmt.Fprintf(&b, " %s: %s (%d attempts);", f.GetPath(), f.GetError(), f.GetAttempts())
	}
	if msg == "" {
		return strings.TrimSuffix(b.String(), ";")
	}
	return msg + "; " + strings.TrimSuffix(b.String(), ";")
}

// mostCached is the node caching most of a file's bytes ("" if none).
func mostCached(f *apiv1.FileInfo) string {
	per := map[string]int64{}
	best := ""
	for _, b := range f.GetFileBlockInfos() {
		for _, l := range b.GetBlockInfo().GetLocations() {
			per[l.GetNode()] += b.GetBlockInfo().GetLength()
			if n := l.GetNode(); best == "" || per[n] > per[best] || (per[n] == per[best] && n < best) {
				best = n
			}
		}
	}
	return best
}
