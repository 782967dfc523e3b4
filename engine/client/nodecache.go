package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// WatchNodeCache opens the master's node cache stream (a snapshot, then
// deltas) and calls fn for each event until ctx ends, the stream breaks or fn
// fails. It does not retry: callers own reconnection and backoff. A master
// that is not the leader (or stops) makes the next call go to the leader.
func (c *Client) WatchNodeCache(ctx context.Context, fn func(*apiv1.NodeCacheEvent) error) error {
	stream, err := apiv1.NewMetaMasterClient(c.master).WatchNodeCache(ctx, &apiv1.WatchNodeCacheRequest{})
	if err != nil {
		return fmt.Errorf("watch node cache: %w", meta.FromStatus(err))
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: stream ended", meta.ErrUnavailable)
			}
			return fmt.Errorf("watch node cache: %w", meta.FromStatus(err))
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// NodeCache returns the bytes of each path cached per node.
func (c *Client) NodeCache(ctx context.Context, paths []string) ([]*apiv1.NodeCacheEntry, error) {
	var out []*apiv1.NodeCacheEntry
	err := c.metaMaster(ctx, func(ctx context.Context, m apiv1.MetaMasterClient) error {
		resp, err := m.GetNodeCache(ctx, &apiv1.GetNodeCacheRequest{Paths: paths})
		out = resp.GetEntries()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get node cache: %w", err)
	}
	return out, nil
}
