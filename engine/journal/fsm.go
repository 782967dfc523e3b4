package journal

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// fsm adapts a StateMachine to raft.BatchingFSM.
type fsm struct {
	sm     StateMachine
	logger klog.Logger
}

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	entries := make([]Entry, 0, len(logs))
	pos := make([]int, 0, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		e := &apiv1.JournalEntry{}
		if err := proto.Unmarshal(l.Data, e); err != nil {
			f.logger.Error(err, "Undecodable journal entry", "index", l.Index)
			out[i] = Result{Err: fmt.Errorf("decode journal entry %d: %w", l.Index, err)}
			continue
		}
		entries = append(entries, Entry{Index: l.Index, Entry: e})
		pos = append(pos, i)
	}
	if len(entries) == 0 {
		return out
	}
	res := f.sm.ApplyBatch(entries)
	for k, i := range pos {
		out[i] = res[k]
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.sm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{s: s}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.sm.Restore(rc)
}

type fsmSnapshot struct{ s SnapshotWriter }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.s.Release() }
