package job

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// task is a JobTask with the scheduler's bookkeeping.
type task struct {
	pb      *apiv1.JobTask
	file    string // the file it works on (retries and failures are per file)
	bytes   int64  // bytes it will cache (reserved on its node while in flight)
	prefer  string // file tasks: the node caching most of the file (reads stay local)
	worker  int64  // job worker running it (0: pending)
	started time.Time
}

// job is a job's in-memory state. Guarded by scheduler.mu.
type job struct {
	info     *apiv1.JobInfo
	pending  []*task
	inflight map[int64]*task
	done     map[string]bool      // file jobs: files finished (also in the store)
	retryAt  map[string]time.Time // files waiting to be tried again
	failed   map[string]*apiv1.FailedFile
	tries    map[string]int32 // failed attempts per file
	planned  time.Time        // last plan round
	replan   bool             // plan at the next round (queue ran dry, a task failed, a worker died)
	prepared bool             // COPY/MOVE: destination directories created this run
	dirty    bool             // info changed since the store last saw it
	newDone  []string         // files finished since the last store write
}

// jobWorker is a registered job worker. Guarded by scheduler.mu.
type jobWorker struct {
	id       int64
	req      *apiv1.RegisterJobWorkerRequest
	lastSeen time.Time
	inflight map[int64]*task
	cancel   []int64 // tasks to stop, sent with the next heartbeat
}

// scheduler owns jobs and job workers.
type scheduler struct {
	cfg    MasterConfig
	store  *store
	fs     *client.Client
	mx     *metrics
	logger klog.Logger
	kick   chan struct{}

	mu      sync.Mutex
	jobs    map[int64]*job
	workers map[int64]*jobWorker
	nextID  int64 // task and worker ids: start from the clock so a restart never reuses one
}

func newScheduler(cfg MasterConfig, st *store, fs *client.Client, mx *metrics, logger klog.Logger) *scheduler {
	return &scheduler{cfg: cfg, store: st, fs: fs, mx: mx, logger: logger, kick: make(chan struct{}, 1),
		jobs: map[int64]*job{}, workers: map[int64]*jobWorker{}, nextID: time.Now().UnixNano()}
}

func newJob(info *apiv1.JobInfo) *job {
	j := &job{info: info, inflight: map[int64]*task{}, done: map[string]bool{}, retryAt: map[string]time.Time{}, failed: map[string]*apiv1.FailedFile{}, tries: map[string]int32{}, replan: true}
	for _, f := range info.GetFailed() {
		j.failed[f.GetPath()] = f
		j.tries[f.GetPath()] = f.GetAttempts()
	}
	return j
}

// resume loads the store: running jobs are planned again from the
// filesystem's state.
func (s *scheduler) resume() error {
	infos, done, err := s.store.load()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, info := range infos {
		info.TasksRunning = 0
		j := newJob(info)
		if d := done[info.GetId()]; d != nil {
			j.done = d
		}
		s.jobs[info.GetId()] = j
	}
	return nil
}

func (s *scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *scheduler) runningCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		if j.info.GetState() == apiv1.JobState_JOB_RUNNING {
			n++
		}
	}
	return n
}

func validateSpec(spec *apiv1.JobSpec) (*apiv1.JobSpec, error) {
	if spec == nil || spec.GetType() == apiv1.JobType_JOB_TYPE_UNSPECIFIED {
		return nil, fmt.Errorf("%w: a job needs a type (load, free, persist, replicate, copy, move)", meta.ErrInvalidArgument)
	}
	spec = proto.Clone(spec).(*apiv1.JobSpec)
	p, err := meta.CleanPath(spec.GetPath())
	if err != nil {
		return nil, fmt.Errorf("job path: %w", err)
	}
	spec.Path = p
	if spec.GetReplication() < 0 || spec.GetReplication() > 64 {
		return nil, fmt.Errorf("%w: replication %d: give 1..64", meta.ErrInvalidArgument, spec.GetReplication())
	}
	if spec.GetPercent() < 0 || spec.GetPercent() > 100 {
		return nil, fmt.Errorf("%w: percent %d: give 1..100", meta.ErrInvalidArgument, spec.GetPercent())
	}
	switch spec.GetType() {
	case apiv1.JobType_COPY, apiv1.JobType_MOVE:
		d, err := meta.CleanPath(spec.GetDst())
		if err != nil {
			return nil, fmt.Errorf("job destination: %w", err)
		}
		if d == p || strings.HasPrefix(d, strings.TrimSuffix(p, "/")+"/") || p == "/" {
			return nil, fmt.Errorf("%w: destination %s is %s or inside it", meta.ErrInvalidArgument, d, p)
		}
		spec.Dst = d
		if spec.GetWriteType() == apiv1.WriteType_WRITE_TYPE_UNSPECIFIED {
			spec.WriteType = apiv1.WriteType_CACHE_THROUGH
		}
	case apiv1.JobType_REPLICATE:
		if spec.GetReplication() == 0 {
			return nil, fmt.Errorf("%w: a replicate job needs --replication N (copies per block)", meta.ErrInvalidArgument)
		}
	}
	return spec, nil
}

func (s *scheduler) submit(ctx context.Context, spec *apiv1.JobSpec) (int64, error) {
	spec, err := validateSpec(spec)
	if err != nil {
		return 0, err
	}
	if _, err := s.fs.GetStatus(ctx, spec.GetPath()); err != nil {
		return 0, fmt.Errorf("submit %s job on %s: %w", strings.ToLower(spec.GetType().String()), spec.GetPath(), err)
	}
	now := time.Now().UnixMilli()
	info := &apiv1.JobInfo{Spec: spec, State: apiv1.JobState_JOB_RUNNING, CreateTimeMs: now, UpdateTimeMs: now}
	if err := s.store.create(info); err != nil {
		return 0, fmt.Errorf("store job: %w", err)
	}
	s.mu.Lock()
	s.jobs[info.GetId()] = newJob(info)
	s.mu.Unlock()
	klog.FromContext(ctx).Info("Job submitted", "job", info.GetId(), "type", spec.GetType(), "path", spec.GetPath())
	s.wake()
	return info.GetId(), nil
}

// ensureReplicationMin keeps one standing REPLICATE job on / for
// alluxio.user.file.replication.min.
func (s *scheduler) ensureReplicationMin(ctx context.Context, n int) error {
	s.mu.Lock()
	for _, j := range s.jobs {
		sp := j.info.GetSpec()
		if j.info.GetState() == apiv1.JobState_JOB_RUNNING && sp.GetType() == apiv1.JobType_REPLICATE && sp.GetName() == replicationMinName {
			if int(sp.GetReplication()) == n {
				s.mu.Unlock()
				return nil
			}
			s.finishLocked(j, apiv1.JobState_JOB_CANCELED, "replaced: alluxio.user.file.replication.min changed")
		}
	}
	s.mu.Unlock()
	s.flush()
	_, err := s.submit(ctx, &apiv1.JobSpec{Type: apiv1.JobType_REPLICATE, Path: "/", Replication: int32(n), Name: replicationMinName})
	return err
}

const replicationMinName = "alluxio.user.file.replication.min"

func (s *scheduler) get(id int64) (*apiv1.JobInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %d: %w", id, meta.ErrNotFound)
	}
	return s.snapshotLocked(j), nil
}

func (s *scheduler) snapshotLocked(j *job) *apiv1.JobInfo {
	info := proto.Clone(j.info).(*apiv1.JobInfo)
	info.TasksRunning = int64(len(j.inflight))
	info.Failed = failedList(j.failed)
	return info
}

func failedList(m map[string]*apiv1.FailedFile) []*apiv1.FailedFile {
	out := make([]*apiv1.FailedFile, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func (s *scheduler) list(all bool) []*apiv1.JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*apiv1.JobInfo
	for _, j := range s.jobs {
		if all || j.info.GetState() == apiv1.JobState_JOB_RUNNING {
			out = append(out, s.snapshotLocked(j))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].GetId() < out[b].GetId() })
	return out
}

func (s *scheduler) cancelJob(id int64) error {
	s.mu.Lock()
	j, ok := s.jobs[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("job %d: %w", id, meta.ErrNotFound)
	}
	if j.info.GetState() == apiv1.JobState_JOB_RUNNING {
		s.finishLocked(j, apiv1.JobState_JOB_CANCELED, "canceled by request")
	}
	s.mu.Unlock()
	return s.flush()
}

// finishLocked ends a job; its tasks in flight are told to stop.
func (s *scheduler) finishLocked(j *job, state apiv1.JobState, msg string) {
	now := time.Now().UnixMilli()
	j.info.State, j.info.Message, j.info.EndTimeMs, j.info.UpdateTimeMs = state, msg, now, now
	j.pending = nil
	for id, t := range j.inflight {
		if w := s.workers[t.worker]; w != nil {
			delete(w.inflight, id)
			w.cancel = append(w.cancel, id)
		}
		delete(j.inflight, id)
	}
	j.dirty = true
	s.logger.Info("Job finished", "job", j.info.GetId(), "state", state, "message", msg)
}

// flush writes changed jobs and finished files to the store.
func (s *scheduler) flush() error {
	s.mu.Lock()
	var infos []*apiv1.JobInfo
	done := map[int64][]string{}
	var ended []int64
	for id, j := range s.jobs {
		if !j.dirty {
			continue
		}
		infos = append(infos, s.snapshotLocked(j))
		if len(j.newDone) > 0 {
			done[id] = j.newDone
		}
		if client.JobFinished(j.info.GetState()) {
			ended = append(ended, id)
		}
		j.dirty, j.newDone = false, nil
	}
	s.mu.Unlock()
	if err := s.store.update(infos, done); err != nil {
		s.logger.Error(err, "Cannot store job state")
		return fmt.Errorf("store job state: %w", err)
	}
	for _, id := range ended {
		if err := s.store.dropDone(id); err != nil {
			s.logger.Error(err, "Cannot drop a finished job's file set", "job", id)
		}
	}
	return nil
}

func (s *scheduler) registerWorker(req *apiv1.RegisterJobWorkerRequest) (int64, error) {
	if req.GetNode() == "" {
		return 0, fmt.Errorf("%w: a job worker must name its node", meta.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	w := &jobWorker{id: s.nextID, req: req, lastSeen: time.Now(), inflight: map[int64]*task{}}
	s.workers[w.id] = w
	s.logger.Info("Job worker registered", "worker", w.id, "node", req.GetNode(), "address", req.GetAddress(), "slots", req.GetSlots())
	s.wake()
	return w.id, nil
}

// heartbeat records task results, then hands out tasks for the worker's
// node up to its free slots. Results are stored before the reply
// acknowledges them.
func (s *scheduler) heartbeat(req *apiv1.JobWorkerHeartbeatRequest) (*apiv1.JobWorkerHeartbeatResponse, error) {
	s.mu.Lock()
	w, ok := s.workers[req.GetWorkerId()]
	if !ok {
		s.mu.Unlock()
		return &apiv1.JobWorkerHeartbeatResponse{Register: true}, nil
	}
	w.lastSeen = time.Now()
	for _, r := range req.GetResults() {
		s.resultLocked(w, r)
	}
	running := map[int64]bool{}
	for _, id := range req.GetRunningTaskIds() {
		running[id] = true
	}
	resp := &apiv1.JobWorkerHeartbeatResponse{CancelTaskIds: w.cancel}
	w.cancel = nil
	for _, id := range req.GetRunningTaskIds() {
		if _, ok := w.inflight[id]; !ok && !slices.Contains(resp.CancelTaskIds, id) {
			resp.CancelTaskIds = append(resp.CancelTaskIds, id) // a task this master does not know
		}
	}
	resp.Tasks = s.assignLocked(w)
	s.mu.Unlock()
	if err := s.flush(); err != nil {
		return nil, err
	}
	if len(req.GetResults()) > 0 {
		s.wake()
	}
	return resp, nil
}

// resultLocked applies one task outcome.
func (s *scheduler) resultLocked(w *jobWorker, r *apiv1.TaskResult) {
	t, ok := w.inflight[r.GetTaskId()]
	if !ok {
		return // canceled, or from before a restart: the plan covers it
	}
	delete(w.inflight, r.GetTaskId())
	j := s.jobs[t.pb.GetJobId()]
	if j == nil {
		return
	}
	delete(j.inflight, r.GetTaskId())
	s.mx.task(t.pb.GetType(), r)
	j.dirty = true
	j.info.UpdateTimeMs = time.Now().UnixMilli()
	if r.GetError() == "" {
		j.info.TasksDone++
		j.info.BytesMoved += r.GetBytes()
		if t.pb.GetBlock() == nil {
			j.done[t.file] = true
			j.newDone = append(j.newDone, t.file)
			j.info.FilesDone = int64(len(j.done))
			j.info.BytesDone += t.bytes
		}
		delete(j.retryAt, t.file)
		return
	}
	j.info.TasksFailed++
	if _, ok := j.failed[t.file]; ok {
		// A task of the file planned before it was given up on: the
		// report already names the file with its attempts.
		return
	}
	j.replan = true
	j.tries[t.file]++
	attempts := j.tries[t.file]
	s.logger.V(1).Info("Task failed", "job", j.info.GetId(), "file", t.file, "attempt", attempts, "err", r.GetError())
	if int(attempts) >= s.cfg.Retries || r.GetPermanent() {
		j.failed[t.file] = &apiv1.FailedFile{Path: t.file, Error: r.GetError(), Attempts: attempts}
		delete(j.retryAt, t.file)
		return
	}
	j.retryAt[t.file] = time.Now().Add(s.cfg.RetryBackoff * time.Duration(attempts))
}

// assignLocked moves pending tasks that this worker may run into flight.
func (s *scheduler) assignLocked(w *jobWorker) []*apiv1.JobTask {
	slots := int(w.req.GetSlots()) - len(w.inflight)
	if slots <= 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(s.jobs))
	var out []*apiv1.JobTask
	// Round-robin over running jobs, one task each per pass.
	for progress := true; progress && slots > 0; {
		progress = false
		for _, id := range ids {
			j := s.jobs[id]
			if slots == 0 {
				break
			}
			if j.info.GetState() != apiv1.JobState_JOB_RUNNING {
				continue
			}
			if i := pickTask(j.pending, w.req.GetNode()); i >= 0 {
				t := j.pending[i]
				j.pending = slices.Delete(j.pending, i, i+1)
				t.worker, t.started = w.id, time.Now()
				j.inflight[t.pb.GetTaskId()] = t
				w.inflight[t.pb.GetTaskId()] = t
				out = append(out, t.pb)
				slots--
				progress = true
			}
			if len(j.pending) == 0 {
				j.replan = true
			}
		}
	}
	return out
}

// pickTask returns the index of the pending task a job worker on node
// should run next: one for its node (a block copy there, or a file whose
// blocks are cached there), else one any node may run; -1 if none.
func pickTask(pending []*task, node string) int {
	other := -1
	for i, t := range pending {
		switch {
		case t.pb.GetNode() == node || (t.pb.GetNode() == "" && t.prefer == node):
			return i
		case t.pb.GetNode() == "" && other < 0:
			other = i
		}
	}
	return other
}

// expireWorkers drops job workers silent for WorkerTimeout; their tasks
// are planned again.
func (s *scheduler) expireWorkers(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range s.workers {
		if now.Sub(w.lastSeen) < s.cfg.WorkerTimeout {
			continue
		}
		s.logger.Info("Job worker lost; its tasks are planned again", "worker", id, "node", w.req.GetNode(), "tasks", len(w.inflight))
		for tid, t := range w.inflight {
			if j := s.jobs[t.pb.GetJobId()]; j != nil {
				delete(j.inflight, tid)
				j.replan = true
			}
		}
		delete(s.workers, id)
	}
	// Pending block tasks for nodes without a job worker now wait forever:
	// plan them again.
	nodes := s.workerNodesLocked()
	for _, j := range s.jobs {
		for _, t := range j.pending {
			if n := t.pb.GetNode(); n != "" && !nodes[n] {
				j.replan = true
				break
			}
		}
	}
}

func (s *scheduler) workerNodesLocked() map[string]bool {
	nodes := map[string]bool{}
	for _, w := range s.workers {
		nodes[w.req.GetNode()] = true
	}
	return nodes
}

// run plans running jobs until ctx ends.
func (s *scheduler) run(ctx context.Context) {
	tick := time.NewTicker(min(s.cfg.PlanInterval/2, 500*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
		now := time.Now()
		s.expireWorkers(now)
		for _, id := range s.due(now) {
			if ctx.Err() != nil {
				return
			}
			s.plan(ctx, id)
		}
		s.flush()
	}
}

// due lists running jobs whose plan round has come.
func (s *scheduler) due(now time.Time) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for id, j := range s.jobs {
		if j.info.GetState() != apiv1.JobState_JOB_RUNNING {
			continue
		}
		retry := false
		for _, at := range j.retryAt {
			if !now.Before(at) {
				retry = true
				break
			}
		}
		if j.replan || retry || now.Sub(j.planned) >= s.cfg.PlanInterval {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
