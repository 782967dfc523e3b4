package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
	_ "github.com/alcove-io/alcove/engine/ufs/s3" // s3:// and s3a:// under storage
)

// mountConfigRefresh is how long a fetched mount configuration is used
// before it is asked for again: a mount id names one mount for good, but
// the root mount's options change when the master restarts with rotated
// credentials.
const mountConfigRefresh = time.Minute

// mountConfigs caches mount configurations (with their UFS credentials)
// fetched from the master by mount id.
type mountConfigs struct {
	mu     sync.Mutex
	mounts map[int64]mountConfig
}

type mountConfig struct {
	mnt *apiv1.MountPointInfo
	at  time.Time
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
	cached, ok := w.mounts.mounts[id]
	w.mounts.mu.Unlock()
	if ok && time.Since(cached.at) < mountConfigRefresh {
		return cached.mnt, nil
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := w.master.GetMountConfig(rctx, &apiv1.GetMountConfigRequest{MountId: id})
	switch {
	case err != nil && ok && !errors.Is(meta.FromStatus(err), meta.ErrNotFound):
		return cached.mnt, nil // the master is away: keep serving with what it said
	case err != nil:
		return nil, fmt.Errorf("get configuration of mount %d from the master: %w", id, meta.FromStatus(err))
	}
	w.mounts.mu.Lock()
	defer w.mounts.mu.Unlock()
	if w.mounts.mounts == nil {
		w.mounts.mounts = map[int64]mountConfig{}
	}
	w.mounts.mounts[id] = mountConfig{mnt: resp.GetMount(), at: time.Now()}
	return resp.GetMount(), nil
}
