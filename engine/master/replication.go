package master

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
)

// Why a worker never serves another file's bytes (the cache outlives worker
// restarts, see engine/blockstore):
//
//   - A block id is (file id, index). Within one namespace a file id names
//     one content forever: ids come from a journaled counter that only
//     grows (nextID), a replaced or abandoned file gets a new id, and the
//     blocks of a file are written once (a failed write abandons the file;
//     workers never overwrite blocks of a completed file).
//   - The namespace is named by a cluster id minted when the store is
//     created (journaled, so standbys agree; `alcove format` makes a new
//     store, hence a new id). A worker records the id with its cache and
//     reports it at registration; when it differs, the master accepts none
//     of its blocks and the worker drops its whole cache before it serves.
//   - Restored blocks are unreadable until that registration settled them,
//     and clients find workers only through the master's registry, so no
//     reader reaches a worker before its cache was checked.
//   - Each reported block must fit its file (acceptBlock): the file exists,
//     and for a completed file the index is below the block count and the
//     length is exactly that block's length; for a file still being written
//     the length is at most the block size. Anything else is freed.

// kClusterID is the cluster id in the meta bucket.
var kClusterID = []byte("cluster_id")

func applySetClusterID(tx *bbolt.Tx, s *apiv1.SetClusterIdEntry) (any, error) {
	if s.GetClusterId() == "" {
		return nil, fmt.Errorf("%w: empty cluster id", meta.ErrInvalidArgument)
	}
	if tx.Bucket(journal.MetaBucket).Get(kClusterID) != nil {
		return applyResult{}, nil // the first id wins; a repeated mint is a no-op
	}
	return applyResult{}, tx.Bucket(journal.MetaBucket).Put(kClusterID, []byte(s.GetClusterId()))
}

// ensureClusterID mints the namespace's cluster id when the store has none.
func (m *Master) ensureClusterID(ctx context.Context) error {
	if id, err := m.clusterID(); err != nil || id != "" {
		return err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("mint cluster id: %w", err)
	}
	_, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetClusterId{SetClusterId: &apiv1.SetClusterIdEntry{ClusterId: hex.EncodeToString(b[:])}}})
	if err != nil {
		return fmt.Errorf("mint cluster id: %w", err)
	}
	return nil
}

// kTokenSecret is the block token secret in the meta bucket.
var kTokenSecret = []byte("token_secret")

// minTokenSecret is the length ensureTokenSecret mints.
const minTokenSecret = 32

func applySetTokenSecret(tx *bbolt.Tx, s *apiv1.SetTokenSecretEntry) (any, error) {
	if len(s.GetSecret()) < minTokenSecret {
		return nil, fmt.Errorf("%w: block token secret of %d bytes", meta.ErrInvalidArgument, len(s.GetSecret()))
	}
	if tx.Bucket(journal.MetaBucket).Get(kTokenSecret) != nil {
		return applyResult{}, nil // the first secret wins
	}
	return applyResult{}, tx.Bucket(journal.MetaBucket).Put(kTokenSecret, s.GetSecret())
}

// ensureTokenSecret mints the group's block token secret when the store has
// none and makes the signer derive its keys from it (see Signer.UseSecret).
func (m *Master) ensureTokenSecret(ctx context.Context) error {
	read := func() ([]byte, error) {
		var secret []byte
		err := m.store.View(func(tx *bbolt.Tx) error {
			secret = bytes.Clone(tx.Bucket(journal.MetaBucket).Get(kTokenSecret))
			return nil
		})
		return secret, err
	}
	secret, err := read()
	if err != nil {
		return fmt.Errorf("read block token secret: %w", err)
	}
	if secret == nil {
		b := make([]byte, minTokenSecret)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("mint block token secret: %w", err)
		}
		if _, err := m.apply(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetTokenSecret{SetTokenSecret: &apiv1.SetTokenSecretEntry{Secret: b}}}); err != nil {
			return fmt.Errorf("mint block token secret: %w", err)
		}
		if secret, err = read(); err != nil {
			return fmt.Errorf("read block token secret: %w", err)
		}
	}
	return m.tokens.UseSecret(secret)
}

// clusterID reads the namespace's cluster id ("" before it is minted).
func (m *Master) clusterID() (string, error) {
	var id string
	err := m.store.View(func(tx *bbolt.Tx) error {
		id = string(tx.Bucket(journal.MetaBucket).Get(kClusterID))
		return nil
	})
	return id, err
}

// fileFacts is what block checks need to know of a file.
type fileFacts struct {
	exists, completed, folder bool
	length, blockSize         int64
	async                     bool  // written ASYNC_THROUGH and not yet PERSISTED
	durable                   int32 // replication.durable
}

// filesOf reads the facts of the files of blocks. It runs before the
// registry lock is taken (store reads never nest in it).
func (m *Master) filesOf(blocks []int64) (map[int64]fileFacts, error) {
	out := map[int64]fileFacts{}
	for _, b := range blocks {
		out[meta.FileIDOf(b)] = fileFacts{}
	}
	err := m.store.View(func(tx *bbolt.Tx) error {
		for f := range out {
			ino, err := getInode(tx, f)
			if err != nil {
				return err
			}
			if ino == nil {
				continue
			}
			out[f] = fileFacts{
				exists: true, completed: ino.Completed, folder: ino.Folder, length: ino.Length, blockSize: ino.BlockSizeBytes,
				async:   ino.WriteType == apiv1.WriteType_ASYNC_THROUGH && ino.PersistenceState != apiv1.PersistenceState_PERSISTED,
				durable: ino.ReplicationDurable,
			}
		}
		return nil
	})
	return out, err
}

// acceptBlock reports whether a block a worker holds belongs to the
// namespace (see the comment at the top of this file).
func acceptBlock(files map[int64]fileFacts, b *apiv1.WorkerBlock) bool {
	f := files[meta.FileIDOf(b.GetBlockId())]
	idx, n := meta.BlockIndexOf(b.GetBlockId()), b.GetLength()
	switch {
	case !f.exists || f.folder || n <= 0 || f.blockSize <= 0:
		return false
	case !f.completed:
		return n <= f.blockSize
	}
	return idx < meta.BlockCount(f.length, f.blockSize) && n == meta.BlockLength(f.length, f.blockSize, idx)
}

func acceptFunc(files map[int64]fileFacts) func(*apiv1.WorkerBlock) bool {
	return func(b *apiv1.WorkerBlock) bool { return acceptBlock(files, b) }
}

// Re-replication: blocks of unpersisted ASYNC_THROUGH files that lost a copy
// with a lost worker are queued here; each heartbeat of a worker holding
// one hands it at most maxReplicatePerHeartbeat push commands.
const (
	maxReplicatePerHeartbeat = 8
	maxRecheckPerHeartbeat   = 256
	replicateRetry           = 30 * time.Second
)

// queueUnderReplicated queues the blocks of files with replication.durable
// copies among blocks (held by a worker just lost).
func (m *Master) queueUnderReplicated(blocks []int64) {
	if len(blocks) == 0 {
		return
	}
	files, err := m.filesOf(blocks)
	if err != nil {
		m.logger.Error(err, "Read files of a lost worker's blocks")
		return
	}
	var want []int64
	for _, b := range blocks {
		if f := files[meta.FileIDOf(b)]; f.async && f.durable > 1 {
			want = append(want, b)
		}
	}
	if len(want) > 0 {
		m.logger.Info("Blocks of unpersisted files lost a copy; re-replicating", "blocks", len(want))
		m.reg.queueRecheck(want)
	}
}

// replicateCommands picks, for worker wid, blocks it holds that are below
// their durable copies, and live targets to push them to.
func (m *Master) replicateCommands(wid int64, now time.Time) []*apiv1.ReplicateCommand {
	cands := m.reg.recheckCandidates(wid, maxRecheckPerHeartbeat)
	if len(cands) == 0 {
		return nil
	}
	files, err := m.filesOf(cands)
	if err != nil {
		return nil
	}
	var out []*apiv1.ReplicateCommand
	for _, b := range cands {
		f := files[meta.FileIDOf(b)]
		if !f.async || f.durable <= 1 {
			m.reg.doneRecheck(b)
			continue
		}
		if len(out) >= maxReplicatePerHeartbeat {
			continue
		}
		need, targets := m.reg.replicaTargets(b, int(f.durable))
		switch {
		case need <= 0:
			m.reg.doneRecheck(b)
		case len(targets) > 0 && m.reg.claimRecheck(b, now):
			out = append(out, &apiv1.ReplicateCommand{BlockId: b, Targets: targets})
		}
	}
	return out
}

// queueRecheck adds blocks to the re-replication queue.
func (r *registry) queueRecheck(blocks []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range blocks {
		if _, ok := r.recheck[b]; !ok {
			r.recheck[b] = time.Time{}
		}
	}
}

// recheckCandidates returns up to limit queued blocks worker wid holds,
// dropping queued blocks no live worker holds any more (nothing to copy).
func (r *registry) recheckCandidates(wid int64, limit int) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[wid]
	if w == nil || len(r.recheck) == 0 {
		return nil
	}
	var out []int64
	seen := 0
	for b := range r.recheck {
		if seen++; seen > limit {
			break
		}
		if r.blocks[b] == nil {
			delete(r.recheck, b)
			continue
		}
		if _, held := w.blocks[b]; held {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// claimRecheck reports whether a push of b may be commanded now (none in
// flight within replicateRetry), and records it.
func (r *registry) claimRecheck(b int64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.recheck[b]
	if !ok || (!at.IsZero() && now.Sub(at) < replicateRetry) {
		return false
	}
	r.recheck[b] = now
	return true
}

func (r *registry) doneRecheck(b int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.recheck, b)
}

// replicaTargets returns how many more copies block b needs to have
// durable copies, and live workers not holding it, best first: workers on
// nodes holding no copy before others, then the emptiest top tier.
func (r *registry) replicaTargets(b int64, durable int) (int, []*apiv1.BlockLocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.blocks[b]
	copies := 0
	nodes := map[string]bool{}
	if e != nil {
		for wid := range e.locs {
			if w := r.workers[wid]; w != nil && !w.lost {
				copies++
				nodes[w.node] = true
			}
		}
	}
	need := durable - copies
	if need <= 0 {
		return 0, nil
	}
	type cand struct {
		w       *worker
		newNode bool
		free    int64
	}
	var cs []cand
	for _, w := range r.workers {
		if w.lost {
			continue
		}
		if _, held := w.blocks[b]; held {
			continue
		}
		var free int64
		for _, t := range w.tiers {
			free += t.GetCapacityBytes() - t.GetUsedBytes()
		}
		cs = append(cs, cand{w: w, newNode: !nodes[w.node], free: free})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].newNode != cs[j].newNode {
			return cs[i].newNode
		}
		if cs[i].free != cs[j].free {
			return cs[i].free > cs[j].free
		}
		return cs[i].w.id < cs[j].w.id
	})
	out := make([]*apiv1.BlockLocation, 0, len(cs))
	for _, c := range cs {
		out = append(out, &apiv1.BlockLocation{WorkerId: c.w.id, WorkerAddress: c.w.address, Node: c.w.node, DataAddress: c.w.dataAddress})
	}
	return need, out
}
