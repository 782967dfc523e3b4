package master

import (
	"context"
	"fmt"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
)

// Exactly-once client calls. A client sends the same request id with every
// retry of a call (meta.RequestIDHeader). The entry that carries out the call
// is journaled with that id, and the state machine records the id with the
// call's result in the same transaction (journal.RecordRequest). So:
//   - a retry arriving after the call was applied finds the id and gets the
//     first result without doing anything (exactlyOnce);
//   - a retry racing its first attempt (both journal an entry) is applied
//     once: the second entry finds the id in the state machine and returns
//     the first result (applyEntry).
// A new leader applies every committed entry before serving (Barrier), so a
// call applied under the old leader is found by retries sent to the new one.

// requestIDKey carries the request id from exactlyOnce to applyCall.
type requestIDKey struct{}

// exactlyOnce runs a journaling call unless its request id was applied
// already, in which case replay builds the first result from the inode the
// call recorded.
func exactlyOnce[T any](ctx context.Context, m *Master, run func(context.Context) (T, error), replay func(*apiv1.Inode) (T, error)) (T, error) {
	rid, err := meta.RequestIDFromContext(ctx)
	if err != nil || rid == nil {
		if err != nil {
			var zero T
			return zero, err
		}
		return run(ctx)
	}
	if ino, ok, err := m.appliedRequest(rid); err != nil || ok {
		if err != nil {
			var zero T
			return zero, err
		}
		return replay(ino)
	}
	v, err := run(context.WithValue(ctx, requestIDKey{}, rid))
	if err != nil {
		// The first attempt may have landed while this one was checking
		// (its effect then made this one fail, e.g. AlreadyExists).
		if ino, ok, lerr := m.appliedRequest(rid); lerr == nil && ok {
			return replay(ino)
		}
	}
	return v, err
}

// applyCall journals the entry that carries out the current client call,
// tagged with its request id.
func (m *Master) applyCall(ctx context.Context, e *apiv1.JournalEntry) (applyResult, error) {
	if rid, ok := ctx.Value(requestIDKey{}).(*apiv1.RequestId); ok {
		e.RequestId = rid
	}
	return m.apply(ctx, e)
}

// appliedRequest returns the inode recorded for an applied request id.
func (m *Master) appliedRequest(rid *apiv1.RequestId) (*apiv1.Inode, bool, error) {
	var ino *apiv1.Inode
	var found bool
	err := m.store.View(func(tx *bbolt.Tx) error {
		v, ok := journal.LookupRequest(tx, rid)
		if !ok {
			return nil
		}
		found = true
		ino = &apiv1.Inode{}
		return proto.Unmarshal(v, ino)
	})
	if err != nil {
		return nil, false, fmt.Errorf("look up request: %w", err)
	}
	return ino, found, nil
}

// dedupEntry is the state machine's half: it returns the recorded result of
// an entry whose request id was applied already.
func dedupEntry(tx *bbolt.Tx, e *apiv1.JournalEntry) (applyResult, bool, error) {
	v, ok := journal.LookupRequest(tx, e.GetRequestId())
	if !ok {
		return applyResult{}, false, nil
	}
	ino := &apiv1.Inode{}
	if err := proto.Unmarshal(v, ino); err != nil {
		return applyResult{}, false, fmt.Errorf("decode request result: %w", err)
	}
	return applyResult{Inode: ino}, true, nil
}

// recordEntry records an applied entry's request id with its result inode.
func recordEntry(tx *bbolt.Tx, e *apiv1.JournalEntry, res applyResult) error {
	var data []byte
	if res.Inode != nil {
		var err error
		if data, err = proto.Marshal(res.Inode); err != nil {
			return fmt.Errorf("encode request result: %w", err)
		}
	}
	return journal.RecordRequest(tx, e.GetRequestId(), e.GetTimeMs(), data)
}

// replayInfo is the FileInfo a replayed create/complete returns: the inode
// as the first attempt left it, at the call's path.
func (m *Master) replayInfo(path string, ino *apiv1.Inode) (*apiv1.FileInfo, error) {
	p, err := meta.CleanPath(path)
	if err != nil {
		return nil, err
	}
	all, err := m.mountTable()
	if err != nil {
		return nil, err
	}
	return m.fileInfo(&node{path: p, inode: ino, mount: mountOf(all, p)}), nil
}

func replayNone(*apiv1.Inode) (struct{}, error) { return struct{}{}, nil }
