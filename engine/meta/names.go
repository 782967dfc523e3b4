package meta

// Names every component agrees on.
const (
	// VolumesRoot holds one directory per dynamically provisioned CSI
	// volume (VolumesRoot/<PV name>); the master's cache index and the
	// extender account cached bytes per child of it.
	VolumesRoot = "/volumes"
	// CSIDriver is the CSI driver name in CSIDriver, StorageClass and PV
	// objects.
	CSIDriver = "csi.alcove.io"
)
