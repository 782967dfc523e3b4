// Package podpaths finds the Alcove namespace paths a pod reads: its
// PersistentVolumeClaims bound to PersistentVolumes of the Alcove CSI driver
// (or, for claims still pending under WaitForFirstConsumer, the `path`
// parameter of their StorageClass), inline CSI volumes of the driver, and
// the paths named by the pod annotation alcove.io/data-paths.
package podpaths

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/alcove-io/alcove/engine/meta"
)

// Names the resolver relies on.
const (
	// AnnotationDataPaths lists extra namespace paths, comma-separated.
	AnnotationDataPaths = "alcove.io/data-paths"
	// AnnotationPlacement "required" asks for hard placement (/filter).
	AnnotationPlacement = "alcove.io/placement"
	// PlacementRequired is the value of AnnotationPlacement for hard placement.
	PlacementRequired = "required"
	// AttrPath is the volume attribute / StorageClass parameter naming the path.
	AttrPath = "path"
)

// Objects looks up the API objects the resolver needs (informer listers in
// production). Lookups of absent objects return an error for which
// apierrors.IsNotFound is true.
type Objects interface {
	PVC(namespace, name string) (*corev1.PersistentVolumeClaim, error)
	PV(name string) (*corev1.PersistentVolume, error)
	StorageClass(name string) (*storagev1.StorageClass, error)
}

// AnnotationsOnly is the Objects of an extender without a Kubernetes API:
// every claim, volume and class is unknown, so a pod's data is what its
// AnnotationDataPaths names.
type AnnotationsOnly struct{}

var _ Objects = AnnotationsOnly{}

func (AnnotationsOnly) PVC(namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumeclaims"), namespace+"/"+name)
}

func (AnnotationsOnly) PV(name string) (*corev1.PersistentVolume, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumes"), name)
}

func (AnnotationsOnly) StorageClass(name string) (*storagev1.StorageClass, error) {
	return nil, apierrors.NewNotFound(storagev1.Resource("storageclasses"), name)
}

// Resolver maps pods to Alcove paths.
type Resolver struct {
	Objects Objects
}

// Paths returns the clean, sorted, de-duplicated namespace paths of pod's
// Alcove data (nil when it has none). Volumes that cannot be resolved yet
// (a claim not in the cache, an unbound claim without a StorageClass path)
// are skipped; malformed annotation entries are reported in the error along
// with every path that did resolve.
func (r *Resolver) Paths(pod *corev1.Pod) ([]string, error) {
	set := map[string]struct{}{}
	var errs []error
	for _, v := range pod.Spec.Volumes {
		var p string
		var err error
		switch {
		case v.PersistentVolumeClaim != nil:
			p, err = r.claimPath(pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			// Generic ephemeral volumes get a claim named <pod>-<volume>.
			p, err = r.claimPath(pod.Namespace, pod.Name+"-"+v.Name)
		case v.CSI != nil && v.CSI.Driver == meta.CSIDriver:
			p = v.CSI.VolumeAttributes[AttrPath]
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve volume %s: %w", v.Name, err))
			continue
		}
		if p != "" {
			if c, err := meta.CleanPath(p); err == nil {
				set[c] = struct{}{}
			}
		}
	}
	if raw := pod.Annotations[AnnotationDataPaths]; raw != "" {
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			c, err := meta.CleanPath(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationDataPaths, err))
				continue
			}
			set[c] = struct{}{}
		}
	}
	if len(set) == 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, errors.Join(errs...)
}

// Required reports whether the pod asks for hard placement.
func Required(pod *corev1.Pod) bool {
	return strings.EqualFold(strings.TrimSpace(pod.Annotations[AnnotationPlacement]), PlacementRequired)
}

// ClaimPath resolves one claim to its namespace path ("" when the claim is
// not Alcove's or is not known yet).
func (r *Resolver) ClaimPath(namespace, name string) (string, error) {
	return r.claimPath(namespace, name)
}

// claimPath resolves one claim ("" when it is not Alcove's or not known yet).
func (r *Resolver) claimPath(namespace, name string) (string, error) {
	pvc, err := r.Objects.PVC(namespace, name)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get claim %s/%s: %w", namespace, name, err)
	}
	if pvc.Spec.VolumeName != "" {
		pv, err := r.Objects.PV(pvc.Spec.VolumeName)
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("get volume %s: %w", pvc.Spec.VolumeName, err)
		}
		return PVPath(pv), nil
	}
	// Pending (WaitForFirstConsumer): only a StorageClass binding an
	// existing path says where the data is.
	scName := ""
	if pvc.Spec.StorageClassName != nil {
		scName = *pvc.Spec.StorageClassName
	}
	if scName == "" {
		return "", nil
	}
	sc, err := r.Objects.StorageClass(scName)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get storage class %s: %w", scName, err)
	}
	if sc.Provisioner != meta.CSIDriver {
		return "", nil
	}
	return sc.Parameters[AttrPath], nil
}

// PVPath returns the namespace path of an Alcove PersistentVolume ("" for
// other drivers): its `path` volume attribute, else an absolute volume
// handle, else meta.VolumesRoot/<handle>.
func PVPath(pv *corev1.PersistentVolume) string {
	csi := pv.Spec.CSI
	if csi == nil || csi.Driver != meta.CSIDriver {
		return ""
	}
	if p := csi.VolumeAttributes[AttrPath]; p != "" {
		return p
	}
	if strings.HasPrefix(csi.VolumeHandle, "/") {
		return csi.VolumeHandle
	}
	if csi.VolumeHandle == "" {
		return ""
	}
	return meta.VolumesRoot + "/" + csi.VolumeHandle
}
