package worker

import (
	"context"
	"fmt"
	"sync"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
	_ "github.com/alcove-io/alcove/engine/ufs/s3" // s3:// and s3a:// under storage
)

// mountConfigs caches mount configurations (with their UFS credentials)
// fetched from the master by mount id. A mount id names one mount for
// good (a new mount gets a new id), so entries never go stale.
type mountConfigs struct {
	mu     sync.Mutex
	mounts map[int64]*apiv1.MountPointInfo
}

// resolveUFS returns the UFS holding ufsPath of mount mountID, built with
// the mount's configuration from the master. A path outside the mount's
// UFS root is refused: clients name paths, the master owns where they lead.
func (w *Worker) resolveUFS(ctx context.Context, ufsPath string, mountID int64) (ufs.UFS, string, error) {
	mnt, err := w.mountConfig(ctx, mountID)
	if err != nil {
		return nil, "", err
	}
	if !ufs.Within(ufsPath, mnt.GetUfsUri()) {
		return nil, "", fmt.Errorf("%w: UFS path %s is outside mount %d (%s)", meta.ErrPermission, ufsPath, mountID, mnt.GetUfsUri())
	}
	return ufs.Resolve(ufsPath, mnt.GetProperties())
}

func (w *Worker) mountConfig(ctx context.Context, id int64) (*apiv1.MountPointInfo, error) {
	w.mounts.mu.Lock()
	mnt, ok := w.mounts.mounts[id]
	w.mounts.mu.Unlock()
	if ok {
		return mnt, nil
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := w.master.GetMountConfig(rctx, &apiv1.GetMountConfigRequest{MountId: id})
	if err != nil {
		return nil, fmt.Errorf("get configuration of mount %d from the master: %w", id, meta.FromStatus(err))
	}
	w.mounts.mu.Lock()
	defer w.mounts.mu.Unlock()
	if w.mounts.mounts == nil {
		w.mounts.mounts = map[int64]*apiv1.MountPointInfo{}
	}
	w.mounts.mounts[id] = resp.GetMount()
	return resp.GetMount(), nil
}
