package locality

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// Watcher opens the master's node cache stream and calls fn per event until
// the stream breaks or ctx ends (engine/client.Client implements it).
type Watcher interface {
	WatchNodeCache(ctx context.Context, fn func(*apiv1.NodeCacheEvent) error) error
}

// FeedConfig tunes Feed.
type FeedConfig struct {
	// MinBackoff and MaxBackoff bound the reconnect delay (default 100 ms, 5 s).
	MinBackoff, MaxBackoff time.Duration
	// StaleAfter: a stream silent this long is reconnected (default 30 s;
	// the master sends an event at least every 10 s).
	StaleAfter time.Duration
}

// Feed keeps x in sync with the master until ctx ends: it watches, applies
// events, and on any break marks x unsynced and reconnects with jittered
// exponential backoff. Each new stream starts with a snapshot, so after a
// master restart or failover the index converges to the new master's
// state. onEvent (optional) is called after each applied event.
func Feed(ctx context.Context, w Watcher, x *Index, cfg FeedConfig, onEvent func(*apiv1.NodeCacheEvent)) {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 30 * time.Second
	}
	logger := klog.FromContext(ctx).WithName("locality")
	backoff := cfg.MinBackoff
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		stale := time.AfterFunc(cfg.StaleAfter, cancel)
		gotSnapshot := false
		err := w.WatchNodeCache(sctx, func(ev *apiv1.NodeCacheEvent) error {
			stale.Reset(cfg.StaleAfter)
			if !gotSnapshot && !ev.GetSnapshot() {
				return errors.New("watch node cache: stream did not start with a snapshot")
			}
			if ev.GetSnapshot() {
				gotSnapshot = true
				backoff = cfg.MinBackoff
				logger.Info("Node cache index synced", "epoch", ev.GetEpoch(), "entries", len(ev.GetEntries()))
			}
			x.Apply(ev)
			if onEvent != nil {
				onEvent(ev)
			}
			return nil
		})
		stale.Stop()
		cancel()
		x.SetUnsynced()
		if ctx.Err() != nil {
			return
		}
		logger.Info("Node cache stream broken; answering no opinion until it is back", "err", err, "retryIn", backoff)
		// Full jitter in [backoff/2, backoff).
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}
