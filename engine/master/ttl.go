package master

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/bbolt"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
)

// ttlLoop acts on expired TTLs: TTL_DELETE (the default) deletes the path,
// also in the UFS; TTL_FREE frees its cached blocks and clears the TTL.
func (m *Master) ttlLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.TTLCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if m.journal.IsLeader() {
				m.checkTTL(ctx, now)
			}
		}
	}
}

type expired struct {
	path  string
	ino   *apiv1.Inode
	mount *apiv1.MountPointInfo
}

func (m *Master) checkTTL(ctx context.Context, now time.Time) {
	logger := klog.FromContext(ctx)
	var due []expired
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := mounts(tx)
		if err != nil {
			return err
		}
		c := tx.Bucket(bTTL).Cursor()
		for k, _ := c.First(); k != nil && int64(journal.U64(k[:8])) <= now.UnixMilli(); k, _ = c.Next() {
			ino, err := getInode(tx, int64(journal.U64(k[8:])))
			if err != nil || ino == nil {
				continue
			}
			p, err := pathOf(tx, ino)
			if err != nil {
				continue
			}
			due = append(due, expired{path: p, ino: ino, mount: mountOf(all, p)})
		}
		return nil
	})
	if err != nil {
		logger.Error(err, "Read TTL index")
		return
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return
		}
		switch e.ino.TtlAction {
		case apiv1.TtlAction_TTL_FREE:
			_, err := m.free(ctx, &apiv1.FreeRequest{Path: e.path, Recursive: true})
			if err != nil {
				logger.Info("TTL expired but the path cannot be freed; clearing its TTL", "path", e.path, "err", err)
			} else {
				logger.Info("TTL expired: freed", "path", e.path)
			}
			var zero int64
			_, err = m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{Id: e.ino.Id, TtlMs: &zero}}})
			if err != nil && !errors.Is(err, meta.ErrNotFound) {
				logger.Error(err, "Clear expired TTL", "path", e.path)
			}
		default:
			err := m.delete(ctx, &apiv1.DeleteRequest{Path: e.path, Recursive: true})
			if err != nil && !errors.Is(err, meta.ErrNotFound) {
				logger.Error(err, "TTL expired but delete failed; clearing its TTL", "path", e.path)
				var zero int64
				_, _ = m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetAttribute{SetAttribute: &apiv1.SetAttributeEntry{Id: e.ino.Id, TtlMs: &zero}}})
				continue
			}
			logger.Info("TTL expired: deleted", "path", e.path)
		}
	}
}
