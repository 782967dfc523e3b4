package worker

import (
	"os"

	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// localHandler serves short-circuit opens from the block store.
type localHandler struct{ w *Worker }

var _ shortcircuit.Handler = localHandler{}

func (h localHandler) OpenLocal(blockID, _ int64, promote bool) (*os.File, int64, int64, string, func(), error) {
	if promote {
		if _, err := h.w.store.Promote(blockID); err != nil {
			return nil, 0, 0, "", nil, err
		}
	}
	bh, err := h.w.store.OpenBlock(blockID)
	if err != nil {
		return nil, 0, 0, "", nil, err
	}
	h.w.metrics.cacheHits.Inc()
	h.w.metrics.bytesDomainSocket.Add(float64(bh.Length))
	return bh.File, bh.Offset, bh.Length, bh.Tier, bh.Release, nil
}
