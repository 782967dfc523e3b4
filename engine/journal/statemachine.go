// Package journal is Alcove's replicated metadata journal: every master
// mutation is an apiv1.JournalEntry committed through hashicorp/raft and then
// applied to a persistent state machine (the master's bbolt metadata store).
//
// Because the state machine is persistent, it records the raft index of the
// last entry it applied in the same transaction as the mutation, and skips
// entries at or below that index on replay. Raft is configured not to restore
// its snapshot on start (the store already holds the state); a snapshot is
// only restored when the store is missing entries the log no longer has.
//
// A journal is a lone member (in-process transport) or one member of a raft
// group over TCP (Config.Peers). Its owner follows leadership
// (LeadershipChanges), calls Barrier before serving as a new leader and
// VerifyRead before answering from the state (linearizable reads). The
// request table (requests.go) lets a state machine apply a retried client
// call once.
package journal

import (
	"io"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// Entry is one committed journal entry with its raft index.
type Entry struct {
	Index uint64
	Entry *apiv1.JournalEntry
}

// Result is the outcome of applying one entry; it is what Journal.Apply
// returns to the caller on the leader.
type Result struct {
	Value any
	Err   error
}

// SnapshotWriter is a consistent view of the state, written out while new
// entries keep being applied.
type SnapshotWriter interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}

// StateMachine is what the journal applies committed entries to.
type StateMachine interface {
	// ApplyBatch applies entries in order and returns one Result per entry.
	// It must skip entries whose index is at or below AppliedIndex and must
	// persist the last index atomically with the mutations.
	ApplyBatch(entries []Entry) []Result
	// AppliedIndex is the index of the last entry applied (persisted).
	AppliedIndex() uint64
	// Snapshot captures a consistent view of the state.
	Snapshot() (SnapshotWriter, error)
	// Restore replaces the whole state with a snapshot's content.
	Restore(r io.Reader) error
}
