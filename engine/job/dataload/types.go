// Package dataload reconciles DataLoad resources (alcove.io/v1alpha1): a
// DataLoad names a path (or a PVC of the Alcove driver) to load into the
// cache to a percentage and/or a replication, optionally on labelled nodes,
// and optionally gates the pods of a workload until the load completes. The
// controller runs in the job master: it submits a LOAD job per DataLoad,
// mirrors the job's progress into the status subresource (phase, percent,
// bytes, conditions Complete/Failed), records events, and keeps a finalizer
// that cancels the job when the DataLoad is deleted.
//
// The types are plain Go structs with hand-written deep copies; the
// controller talks to the API through the dynamic client and converts with
// runtime.DefaultUnstructuredConverter, so no generated clientset is needed.
package dataload

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Names of the API.
const (
	Group     = "alcove.io"
	Version   = "v1alpha1"
	Kind      = "DataLoad"
	Resource  = "dataloads"
	Finalizer = "alcove.io/dataload-job"
	// SchedulingGate is the pod scheduling gate that runBefore lifts once
	// the load is Complete.
	SchedulingGate = "alcove.io/dataload"
)

// GVR is the DataLoad resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// Phases.
const (
	PhasePending  = "Pending"
	PhaseRunning  = "Running"
	PhaseComplete = "Complete"
	PhaseFailed   = "Failed"
)

// Condition types.
const (
	ConditionComplete = "Complete"
	ConditionFailed   = "Failed"
)

// DataLoad asks for a path to be loaded into the cache.
type DataLoad struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              DataLoadSpec   `json:"spec"`
	Status            DataLoadStatus `json:"status,omitempty"`
}

// DataLoadSpec is what to load and where.
type DataLoadSpec struct {
	// Path is an Alcove namespace path; or PVC names a claim of the Alcove
	// driver in the DataLoad's namespace (its volume's path is loaded).
	Path string `json:"path,omitempty"`
	PVC  string `json:"pvc,omitempty"`
	// Percent of the bytes to cache (default 100).
	Percent int32 `json:"percent,omitempty"`
	// Replication: copies of every block on distinct nodes (default 1).
	Replication int32 `json:"replication,omitempty"`
	// NodeSelector limits the nodes (labels of Kubernetes Nodes).
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// RunBefore holds pods with these labels (in the DataLoad's namespace)
	// that carry the scheduling gate alcove.io/dataload until the load is
	// Complete.
	RunBefore *RunBefore `json:"runBefore,omitempty"`
}

// RunBefore names a workload by labels.
type RunBefore struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

// DataLoadStatus mirrors the job.
type DataLoadStatus struct {
	Phase              string             `json:"phase,omitempty"`
	JobID              int64              `json:"jobId,omitempty"`
	Path               string             `json:"path,omitempty"`
	Progress           int32              `json:"progress"`
	BytesLoaded        int64              `json:"bytesLoaded"`
	BytesTotal         int64              `json:"bytesTotal"`
	FilesLoaded        int64              `json:"filesLoaded"`
	FilesTotal         int64              `json:"filesTotal"`
	FailedFiles        []string           `json:"failedFiles,omitempty"`
	Message            string             `json:"message,omitempty"`
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// DeepCopyInto copies d into out.
func (d *DataLoad) DeepCopyInto(out *DataLoad) {
	*out = *d
	out.TypeMeta = d.TypeMeta
	d.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	d.Spec.DeepCopyInto(&out.Spec)
	d.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of d.
func (d *DataLoad) DeepCopy() *DataLoad {
	if d == nil {
		return nil
	}
	out := new(DataLoad)
	d.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies s into out.
func (s *DataLoadSpec) DeepCopyInto(out *DataLoadSpec) {
	*out = *s
	out.NodeSelector = copyMap(s.NodeSelector)
	if s.RunBefore != nil {
		out.RunBefore = &RunBefore{MatchLabels: copyMap(s.RunBefore.MatchLabels)}
	}
}

// DeepCopyInto copies s into out.
func (s *DataLoadStatus) DeepCopyInto(out *DataLoadStatus) {
	*out = *s
	if s.FailedFiles != nil {
		out.FailedFiles = append([]string(nil), s.FailedFiles...)
	}
	if s.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(s.Conditions))
		for i := range s.Conditions {
			s.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
