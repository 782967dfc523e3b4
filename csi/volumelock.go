package csi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Node operations on one volume run one at a time, under that volume's
// lock; operations on different volumes, and the health loop's restores,
// run in parallel. n.mu guards only the maps (staged volumes and locks), so
// a FUSE daemon that takes its mount timeout to start holds up nothing else.

// volumeLock is a volume's lock: a one-slot semaphore (waiting on it can
// end with the RPC's context), dropped from the map when nobody holds or
// waits for it.
type volumeLock struct {
	slot chan struct{}
	refs int
}

// lockVolume waits for id's lock until ctx ends (Aborted, as kubelet retries
// an operation already in progress) and returns its release.
func (n *nodeServer) lockVolume(ctx context.Context, id string) (func(), error) {
	l := n.refLock(id)
	select {
	case l.slot <- struct{}{}:
		return func() { <-l.slot; n.unrefLock(id, l) }, nil
	case <-ctx.Done():
		n.unrefLock(id, l)
		return nil, status.Errorf(codes.Aborted, "volume %s: another operation on it is still running: %v", id, ctx.Err())
	}
}

// tryLockVolume takes id's lock if it is free (the health loop leaves a
// volume that an RPC is working on to that RPC).
func (n *nodeServer) tryLockVolume(id string) (func(), bool) {
	l := n.refLock(id)
	select {
	case l.slot <- struct{}{}:
		return func() { <-l.slot; n.unrefLock(id, l) }, true
	default:
		n.unrefLock(id, l)
		return nil, false
	}
}

func (n *nodeServer) refLock(id string) *volumeLock {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.locks[id]
	if l == nil {
		l = &volumeLock{slot: make(chan struct{}, 1)}
		n.locks[id] = l
	}
	l.refs++
	return l
}

func (n *nodeServer) unrefLock(id string, l *volumeLock) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(n.locks, id)
	}
}

// stagedVol returns the staged volume id (the caller holds its lock to use it).
func (n *nodeServer) stagedVol(id string) (*stagedVolume, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.staged[id]
	return v, ok
}

// setStaged records (v != nil) or forgets (v == nil) the staged volume id.
func (n *nodeServer) setStaged(id string, v *stagedVolume) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if v == nil {
		delete(n.staged, id)
	} else {
		n.staged[id] = v
	}
}

// stagedIDs lists the staged volumes' ids.
func (n *nodeServer) stagedIDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.staged))
	for id := range n.staged {
		ids = append(ids, id)
	}
	return ids
}
