package podpaths

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
)

// Listers answers Objects from shared informer caches (no API call per
// lookup).
type Listers struct {
	factory informers.SharedInformerFactory
	pvcs    corelisters.PersistentVolumeClaimLister
	pvs     corelisters.PersistentVolumeLister
	scs     storagelisters.StorageClassLister
}

var _ Objects = (*Listers)(nil)

// StartListers starts PVC, PV and StorageClass informers until ctx ends.
// Lookups answer from what the caches hold so far (WaitForSync waits).
func StartListers(ctx context.Context, cs kubernetes.Interface, resync time.Duration) *Listers {
	f := informers.NewSharedInformerFactory(cs, resync)
	l := &Listers{
		factory: f,
		pvcs:    f.Core().V1().PersistentVolumeClaims().Lister(),
		pvs:     f.Core().V1().PersistentVolumes().Lister(),
		scs:     f.Storage().V1().StorageClasses().Lister(),
	}
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		f.Shutdown()
	}()
	return l
}

// WaitForSync waits until every informer cache has synced or ctx ends.
func (l *Listers) WaitForSync(ctx context.Context) error {
	for typ, ok := range l.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync informer cache of %v: %w", typ, context.Cause(ctx))
		}
	}
	return nil
}

// PVC implements Objects.
func (l *Listers) PVC(namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	return l.pvcs.PersistentVolumeClaims(namespace).Get(name)
}

// PV implements Objects.
func (l *Listers) PV(name string) (*corev1.PersistentVolume, error) { return l.pvs.Get(name) }

// StorageClass implements Objects.
func (l *Listers) StorageClass(name string) (*storagev1.StorageClass, error) {
	return l.scs.Get(name)
}
