package dataload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// Jobs is what the controller needs of the job master.
type Jobs interface {
	Submit(ctx context.Context, spec *apiv1.JobSpec) (int64, error)
	Get(ctx context.Context, id int64) (*apiv1.JobInfo, error)
	List(ctx context.Context, all bool) ([]*apiv1.JobInfo, error)
	Cancel(ctx context.Context, id int64) error
}

// Claims resolves a PersistentVolumeClaim to its Alcove path ("" when it
// is not Alcove's or not bound yet).
type Claims interface {
	ClaimPath(namespace, name string) (string, error)
}

// Config wires a Controller.
type Config struct {
	Dynamic dynamic.Interface
	Kube    kubernetes.Interface
	Jobs    Jobs
	Claims  Claims
	// Poll is how often a running DataLoad's job is read (default 1 s).
	Poll time.Duration
}

// Controller reconciles DataLoads.
type Controller struct {
	cfg      Config
	queue    workqueue.TypedRateLimitingInterface[string]
	factory  dynamicinformer.DynamicSharedInformerFactory
	informer cache.SharedIndexInformer
	events   record.EventBroadcaster
	recorder record.EventRecorder
}

// New builds a controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	c := &Controller{cfg: cfg,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "dataloads"})}
	c.factory = dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 10*time.Minute)
	c.informer = c.factory.ForResource(GVR).Informer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	_, _ = c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	})
	c.events = record.NewBroadcaster()
	c.recorder = c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "alcove-job-master"})
	return c
}

// Run reconciles with workers goroutines until ctx ends, then joins them.
func (c *Controller) Run(ctx context.Context, workers int) error {
	logger := klog.FromContext(ctx).WithName("dataload")
	ctx = klog.NewContext(ctx, logger)
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Kube.CoreV1().Events("")})
	defer c.events.Shutdown()
	defer c.queue.ShutDown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		return fmt.Errorf("sync DataLoad informer: %w", ctx.Err())
	}
	logger.Info("DataLoad controller started")
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	after, err := c.reconcile(ctx, key)
	switch {
	case err != nil:
		// A conflict means the cache was behind: the next event brings the
		// newer object. Shutting down is not an error either.
		if !apierrors.IsConflict(err) && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Reconcile failed; retrying", "dataload", key)
		}
		c.queue.AddRateLimited(key)
	case after > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, after)
	default:
		c.queue.Forget(key)
	}
	return true
}

// reconcile moves one DataLoad toward its job's state; after > 0 asks to
// be called again then.
func (c *Controller) reconcile(ctx context.Context, key string) (after time.Duration, err error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	obj, exists, err := c.informer.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return 0, err
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	var dl DataLoad
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dl); err != nil {
		return 0, fmt.Errorf("decode DataLoad %s: %w", key, err)
	}
	res := c.cfg.Dynamic.Resource(GVR).Namespace(ns)
	if dl.DeletionTimestamp != nil {
		if !slices.Contains(dl.Finalizers, Finalizer) {
			return 0, nil
		}
		if id := dl.Status.JobID; id != 0 {
			if j, err := c.cfg.Jobs.Get(ctx, id); err == nil && j.GetState() == apiv1.JobState_JOB_RUNNING {
				if err := c.cfg.Jobs.Cancel(ctx, id); err != nil {
					return 0, err
				}
				c.recorder.Eventf(u, corev1.EventTypeNormal, "Canceled", "DataLoad deleted: canceled job %d", id)
			} else if err != nil && !errors.Is(err, meta.ErrNotFound) {
				return 0, err
			}
		}
		u.SetFinalizers(slices.DeleteFunc(u.GetFinalizers(), func(f string) bool { return f == Finalizer }))
		_, err := res.Update(ctx, u, metav1.UpdateOptions{})
		return 0, ignoreNotFound(err)
	}
	if !slices.Contains(dl.Finalizers, Finalizer) {
		u.SetFinalizers(append(u.GetFinalizers(), Finalizer))
		_, err := res.Update(ctx, u, metav1.UpdateOptions{})
		return 0, ignoreNotFound(err) // the update brings it back
	}
	st := *dl.Status.DeepCopyOrEmpty()
	after, err = c.step(ctx, &dl, u, &st)
	if err != nil {
		return 0, err
	}
	st.ObservedGeneration = dl.Generation
	if !equality.Semantic.DeepEqual(st, dl.Status) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
		if err != nil {
			return 0, err
		}
		u.Object["status"] = m
		if _, err := res.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			return 0, ignoreNotFound(err)
		}
	}
	if st.Phase == PhaseComplete && dl.Spec.RunBefore != nil {
		if err := c.ungate(ctx, ns, dl.Spec.RunBefore.MatchLabels); err != nil {
			return 0, err
		}
		return 10 * time.Second, nil // pods created later are let through too
	}
	klog.FromContext(ctx).V(2).Info("Reconciled", "dataload", key, "name", name, "phase", st.Phase, "progress", st.Progress)
	return after, nil
}

// DeepCopyOrEmpty returns a copy of s (never nil).
func (s *DataLoadStatus) DeepCopyOrEmpty() *DataLoadStatus {
	out := &DataLoadStatus{}
	s.DeepCopyInto(out)
	return out
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// step computes the new status.
func (c *Controller) step(ctx context.Context, dl *DataLoad, u *unstructured.Unstructured, st *DataLoadStatus) (time.Duration, error) {
	if st.JobID == 0 {
		return c.submit(ctx, dl, u, st)
	}
	j, err := c.cfg.Jobs.Get(ctx, st.JobID)
	if errors.Is(err, meta.ErrNotFound) {
		st.JobID = 0 // the job store was lost: submit again
		return time.Millisecond, nil
	}
	if err != nil {
		return 0, err
	}
	st.Progress, st.BytesLoaded, st.BytesTotal = j.GetPercent(), j.GetBytesDone(), j.GetBytesTotal()
	st.FilesLoaded, st.FilesTotal, st.Message = j.GetFilesDone(), j.GetFilesTotal(), j.GetMessage()
	st.FailedFiles = nil
	for _, f := range j.GetFailed() {
		st.FailedFiles = append(st.FailedFiles, f.GetPath()+": "+f.GetError())
	}
	prev := st.Phase
	switch j.GetState() {
	case apiv1.JobState_JOB_RUNNING:
		st.Phase = PhaseRunning
		setCondition(st, ConditionComplete, false, "Loading", fmt.Sprintf("job %d: %d%%", st.JobID, st.Progress))
		return c.cfg.Poll, nil
	case apiv1.JobState_JOB_COMPLETED:
		st.Phase = PhaseComplete
		setCondition(st, ConditionComplete, true, "TargetReached", fmt.Sprintf("job %d loaded %d%% of %s", st.JobID, st.Progress, st.Path))
		setCondition(st, ConditionFailed, false, "TargetReached", "")
		if prev != PhaseComplete {
			c.recorder.Eventf(u, corev1.EventTypeNormal, "Complete", "Job %d loaded %s: %d%%, %d bytes", st.JobID, st.Path, st.Progress, st.BytesLoaded)
		}
	default:
		reason := "JobFailed"
		if j.GetState() == apiv1.JobState_JOB_CANCELED {
			reason = "JobCanceled"
		}
		c.fail(u, st, reason, fmt.Sprintf("job %d: %s", st.JobID, j.GetMessage()))
	}
	return 0, nil
}

func (c *Controller) fail(u *unstructured.Unstructured, st *DataLoadStatus, reason, msg string) {
	if st.Phase != PhaseFailed {
		c.recorder.Event(u, corev1.EventTypeWarning, reason, msg)
	}
	st.Phase, st.Message = PhaseFailed, msg
	setCondition(st, ConditionFailed, true, reason, msg)
	setCondition(st, ConditionComplete, false, reason, msg)
}

func setCondition(st *DataLoadStatus, typ string, ok bool, reason, msg string) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg})
}

// jobName ties a job to one DataLoad object, so a controller that restarts
// between submitting and recording the job adopts it instead of loading twice.
func jobName(dl *DataLoad) string {
	return "dataload/" + dl.Namespace + "/" + dl.Name + "/" + string(dl.UID)
}

func (c *Controller) submit(ctx context.Context, dl *DataLoad, u *unstructured.Unstructured, st *DataLoadStatus) (time.Duration, error) {
	spec := dl.Spec
	if (spec.Path == "") == (spec.PVC == "") {
		c.fail(u, st, "InvalidSpec", "give exactly one of spec.path and spec.pvc")
		return 0, nil
	}
	if spec.Percent < 0 || spec.Percent > 100 || spec.Replication < 0 {
		c.fail(u, st, "InvalidSpec", "spec.percent must be 1..100 and spec.replication 1 or more")
		return 0, nil
	}
	path := spec.Path
	if spec.PVC != "" {
		p, err := c.cfg.Claims.ClaimPath(dl.Namespace, spec.PVC)
		if err != nil {
			return 0, err
		}
		if p == "" {
			st.Phase, st.Message = PhasePending, fmt.Sprintf("claim %s is not bound to an Alcove volume yet", spec.PVC)
			return 5 * time.Second, nil
		}
		path = p
	}
	js := &apiv1.JobSpec{Type: apiv1.JobType_LOAD, Path: path, Percent: spec.Percent, Replication: spec.Replication, Name: jobName(dl)}
	if len(spec.NodeSelector) > 0 {
		nodes, err := c.cfg.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(spec.NodeSelector).String()})
		if err != nil {
			return 0, fmt.Errorf("list nodes: %w", err)
		}
		for _, n := range nodes.Items {
			js.Nodes = append(js.Nodes, n.Name)
		}
		if len(js.Nodes) == 0 {
			st.Phase, st.Message = PhasePending, "no node matches spec.nodeSelector"
			return 10 * time.Second, nil
		}
	}
	jobs, err := c.cfg.Jobs.List(ctx, true)
	if err != nil {
		return 0, err
	}
	for _, j := range jobs {
		if j.GetSpec().GetName() == js.Name {
			st.JobID, st.Path = j.GetId(), path
			return time.Millisecond, nil
		}
	}
	id, err := c.cfg.Jobs.Submit(ctx, js)
	if err != nil {
		if errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrInvalidArgument) || errors.Is(err, meta.ErrInvalidPath) {
			c.fail(u, st, "InvalidPath", oneLine(err))
			return 0, nil
		}
		return 0, err
	}
	st.JobID, st.Path, st.Phase, st.Message = id, path, PhaseRunning, ""
	c.recorder.Eventf(u, corev1.EventTypeNormal, "Submitted", "Job %d loads %s", id, path)
	return c.cfg.Poll, nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// ungate lifts the scheduling gate from the workload's pods.
func (c *Controller) ungate(ctx context.Context, ns string, match map[string]string) error {
	pods, err := c.cfg.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(match).String()})
	if err != nil {
		return fmt.Errorf("list pods to ungate: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		n := len(p.Spec.SchedulingGates)
		p.Spec.SchedulingGates = slices.DeleteFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == SchedulingGate })
		if len(p.Spec.SchedulingGates) == n {
			continue
		}
		if _, err := c.cfg.Kube.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("ungate pod %s/%s: %w", ns, p.Name, err)
		}
		klog.FromContext(ctx).Info("Lifted the DataLoad scheduling gate", "pod", klog.KObj(p))
	}
	return nil
}
