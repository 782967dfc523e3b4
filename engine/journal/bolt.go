package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/meta"
)

// MetaBucket holds the applied index (key AppliedIndexKey); state machines
// built on BoltFSM may keep their own counters in it too.
var (
	MetaBucket      = []byte("meta")
	AppliedIndexKey = []byte("applied_index")
)

// ApplyFunc applies one entry inside a read-write transaction. It must check
// everything that can fail before it mutates anything: when it returns an
// error the transaction is rolled back, so a failed entry leaves no trace.
type ApplyFunc func(tx *bbolt.Tx, e *apiv1.JournalEntry) (any, error)

// BoltFSM is a StateMachine stored in one bbolt file, off the Go heap.
type BoltFSM struct {
	path      string
	apply     ApplyFunc
	onRestore func()

	mu      sync.RWMutex // write-held while Restore swaps the file
	db      *bbolt.DB
	applied atomic.Uint64
	broken  atomic.Pointer[error]
}

var _ StateMachine = (*BoltFSM)(nil)

// OpenBolt opens (creating if needed) the bbolt state file at path.
func OpenBolt(path string, apply ApplyFunc) (*BoltFSM, error) {
	if err := fsutil.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	b := &BoltFSM{path: path, apply: apply}
	if err := b.open(); err != nil {
		return nil, err
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil { // bbolt may have created the file
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *BoltFSM) open() error {
	db, err := bbolt.Open(b.path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("open state store %s: %w", b.path, err)
	}
	var applied uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(MetaBucket)
		if err != nil {
			return err
		}
		applied = U64(bk.Get(AppliedIndexKey))
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("initialize state store %s: %w", b.path, err)
	}
	b.db = db
	b.applied.Store(applied)
	return nil
}

// OnRestore registers a hook run after Restore replaced the state, so that
// owners can drop anything derived from the old state.
func (b *BoltFSM) OnRestore(fn func()) { b.onRestore = fn }

// Path returns the file backing the state.
func (b *BoltFSM) Path() string { return b.path }

// View runs fn in a read-only transaction on the current state.
func (b *BoltFSM) View(fn func(tx *bbolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return fmt.Errorf("read state store: %w", meta.ErrUnavailable)
	}
	return b.db.View(fn)
}

// Init runs fn in a read-write transaction outside the journal. It is meant
// for schema setup only (creating buckets), never for state changes.
func (b *BoltFSM) Init(fn func(tx *bbolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return fmt.Errorf("init state store: %w", meta.ErrUnavailable)
	}
	return b.db.Update(fn)
}

// AppliedIndex implements StateMachine.
func (b *BoltFSM) AppliedIndex() uint64 { return b.applied.Load() }

// ApplyBatch implements StateMachine. The fast path applies the whole batch
// in one transaction (one fsync); if any entry fails, the batch is rolled back
// and replayed one transaction per entry so the failed entries leave nothing
// behind while the others still apply. Both paths yield the same results.
func (b *BoltFSM) ApplyBatch(entries []Entry) []Result {
	res := make([]Result, len(entries))
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		err := fmt.Errorf("apply journal entry: state store %s is closed: %w", b.path, meta.ErrUnavailable)
		b.broken.Store(&err)
	}
	if p := b.broken.Load(); p != nil {
		for i := range res {
			res[i].Err = *p
		}
		return res
	}
	applied := b.applied.Load()
	todo := make([]int, 0, len(entries))
	for i, e := range entries {
		if e.Index <= applied {
			res[i].Err = nil // replayed entry already in the store
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return res
	}
	last := entries[todo[len(todo)-1]].Index
	errEntry := errors.New("entry failed")
	err := b.db.Update(func(tx *bbolt.Tx) error {
		for _, i := range todo {
			v, err := b.apply(tx, entries[i].Entry)
			if err != nil {
				return errEntry
			}
			res[i].Value = v
		}
		return setApplied(tx, last)
	})
	if err == nil {
		b.applied.Store(last)
		return res
	}
	if !errors.Is(err, errEntry) {
		b.fail(res, todo, err)
		return res
	}
	for _, i := range todo {
		var v any
		var applyErr error
		err := b.db.Update(func(tx *bbolt.Tx) error {
			v, applyErr = b.apply(tx, entries[i].Entry)
			if applyErr != nil {
				return applyErr
			}
			return setApplied(tx, entries[i].Index)
		})
		if applyErr != nil {
			// The entry was rolled back; still record that it was applied.
			err = b.db.Update(func(tx *bbolt.Tx) error { return setApplied(tx, entries[i].Index) })
			res[i] = Result{Err: applyErr}
		} else {
			res[i] = Result{Value: v}
		}
		if err != nil {
			b.fail(res, todo, err)
			return res
		}
		b.applied.Store(entries[i].Index)
	}
	return res
}

// fail marks the store broken after a storage error: the state no longer
// follows the journal, so every later entry fails until a restart replays it.
func (b *BoltFSM) fail(res []Result, todo []int, err error) {
	err = fmt.Errorf("apply journal entry to %s: %v: %w", b.path, err, meta.ErrUnavailable)
	b.broken.Store(&err)
	for _, i := range todo {
		if res[i].Err == nil {
			res[i] = Result{Err: err}
		}
	}
}

func setApplied(tx *bbolt.Tx, index uint64) error {
	return tx.Bucket(MetaBucket).Put(AppliedIndexKey, PutU64(index))
}

type boltSnapshot struct{ tx *bbolt.Tx }

func (s *boltSnapshot) WriteTo(w io.Writer) (int64, error) { return s.tx.WriteTo(w) }
func (s *boltSnapshot) Release()                           { _ = s.tx.Rollback() }

// Snapshot implements StateMachine with a read transaction: a consistent
// copy of the database that new writes do not disturb.
func (b *BoltFSM) Snapshot() (SnapshotWriter, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	tx, err := b.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot of %s: %w", b.path, err)
	}
	return &boltSnapshot{tx: tx}, nil
}

// Restore implements StateMachine: the snapshot is written beside the store,
// fsynced, and renamed over it.
func (b *BoltFSM) Restore(r io.Reader) error {
	tmp := b.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write snapshot to %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db != nil {
		if err := b.db.Close(); err != nil {
			return fmt.Errorf("close state store %s: %w", b.path, err)
		}
		b.db = nil
	}
	if err := os.Rename(tmp, b.path); err != nil {
		return fmt.Errorf("replace state store %s: %w", b.path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(b.path)); err != nil {
		return err
	}
	if err := b.open(); err != nil {
		return err
	}
	b.broken.Store(nil)
	if b.onRestore != nil {
		b.onRestore()
	}
	return nil
}

// Close closes the store; later calls fail with ErrUnavailable.
func (b *BoltFSM) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db = nil
	if err != nil {
		return fmt.Errorf("close state store %s: %w", b.path, err)
	}
	return nil
}

// PutU64 encodes v big-endian (keys sort numerically).
func PutU64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// U64 decodes a big-endian uint64; nil or short input is 0.
func U64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
