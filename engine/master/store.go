package master

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
)

// Layout of the metadata store (bbolt, DIR/metadata.db):
//
//	inodes      id → marshaled apiv1.Inode
//	edges       parentID ‖ name → childID
//	meta        next_inode_id, next_mount_id, inode_count, applied_index (journal),
//	            cluster_id, token_secret (block token keys derive from it; never log it)
//	mounts      alcove path → marshaled apiv1.MountPointInfo
//	ttl         expiry ms ‖ id → ∅ (creation time + ttl)
//	pinned      file id → ∅
//	unpersisted file id → persistence state (files not yet PERSISTED)
//	orphans     session ‖ 0 ‖ id → ∅ (files unlinked while open, by session)
//	masters     journal member id → marshaled apiv1.SetMasterAddressEntry
//	requests, requests_by_time: applied request ids (engine/journal/requests.go)
var (
	bInodes      = []byte("inodes")
	bEdges       = []byte("edges")
	bMounts      = []byte("mounts")
	bTTL         = []byte("ttl")
	bPinned      = []byte("pinned")
	bUnpersisted = []byte("unpersisted")
	bOrphans     = []byte("orphans")
	bMasters     = []byte("masters")

	kNextInode  = []byte("next_inode_id")
	kNextMount  = []byte("next_mount_id")
	kInodeCount = []byte("inode_count")
	// kChildDirsCounted marks a store whose directories all carry
	// child_dirs (CountChildDirsEntry ran, or it was new).
	kChildDirsCounted = []byte("child_dirs_counted")
)

// RootID is the id of the root directory.
const RootID int64 = 1

var allBuckets = [][]byte{journal.MetaBucket, bInodes, bEdges, bMounts, bTTL, bPinned, bUnpersisted, bOrphans, bMasters}

func ensureBuckets(tx *bbolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return nil
}

func idKey(id int64) []byte { return journal.PutU64(uint64(id)) }

func edgeKey(parent int64, name string) []byte {
	k := make([]byte, 8, 8+len(name))
	copy(k, idKey(parent))
	return append(k, name...)
}

// orphanKey indexes an orphan by its session (sessions hold no NUL).
func orphanKey(session string, id int64) []byte {
	k := make([]byte, 0, len(session)+9)
	k = append(k, session...)
	k = append(k, 0)
	return append(k, idKey(id)...)
}

// isOrphan reports whether ino lost its name while open.
func isOrphan(ino *apiv1.Inode) bool { return ino.OrphanSession != "" }

// isSymlink reports whether ino is a symbolic link.
func isSymlink(ino *apiv1.Inode) bool { return ino.SymlinkTarget != "" }

// inoOf is ino's POSIX inode number.
func inoOf(ino *apiv1.Inode) int64 {
	if ino.Ino != 0 {
		return ino.Ino
	}
	return ino.Id
}

func ttlKey(expiry, id int64) []byte {
	k := make([]byte, 0, 16)
	k = append(k, idKey(expiry)...)
	return append(k, idKey(id)...)
}

// getInode reads an inode; nil when absent.
func getInode(tx *bbolt.Tx, id int64) (*apiv1.Inode, error) {
	v := tx.Bucket(bInodes).Get(idKey(id))
	if v == nil {
		return nil, nil
	}
	ino := &apiv1.Inode{}
	if err := proto.Unmarshal(v, ino); err != nil {
		return nil, fmt.Errorf("decode inode %d: %w", id, err)
	}
	return ino, nil
}

// childID returns the id of parent's child name, 0 when absent.
func childID(tx *bbolt.Tx, parent int64, name string) int64 {
	return int64(journal.U64(tx.Bucket(bEdges).Get(edgeKey(parent, name))))
}

// child reads parent's child name; nil when absent.
func child(tx *bbolt.Tx, parent int64, name string) (*apiv1.Inode, error) {
	id := childID(tx, parent, name)
	if id == 0 {
		return nil, nil
	}
	return getInode(tx, id)
}

// eachChild calls fn for parent's children in name order until fn returns false.
func eachChild(tx *bbolt.Tx, parent int64, fn func(name string, id int64) bool) {
	prefix := idKey(parent)
	c := tx.Bucket(bEdges).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if !fn(string(k[8:]), int64(journal.U64(v))) {
			return
		}
	}
}

func hasChildren(tx *bbolt.Tx, parent int64) bool {
	found := false
	eachChild(tx, parent, func(string, int64) bool { found = true; return false })
	return found
}

// children reads parent's children in name order.
func children(tx *bbolt.Tx, parent int64) ([]*apiv1.Inode, error) {
	var out []*apiv1.Inode
	var err error
	eachChild(tx, parent, func(_ string, id int64) bool {
		var ino *apiv1.Inode
		ino, err = getInode(tx, id)
		if err != nil {
			return false
		}
		if ino != nil {
			out = append(out, ino)
		}
		return true
	})
	return out, err
}

// walk resolves the components of a clean path. It returns the inodes found
// from the root down (inodes[0] is the root); len(inodes)-1 < len(comps) means
// comps[len(inodes)-1] does not exist (or an ancestor is a file).
func walk(tx *bbolt.Tx, comps []string) ([]*apiv1.Inode, error) {
	root, err := getInode(tx, RootID)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmt.Errorf("read root inode: %w", meta.ErrUnavailable)
	}
	out := make([]*apiv1.Inode, 1, len(comps)+1)
	out[0] = root
	cur := root
	for _, c := range comps {
		if !cur.Folder {
			break
		}
		next, err := child(tx, cur.Id, c)
		if err != nil {
			return nil, err
		}
		if next == nil {
			break
		}
		out = append(out, next)
		cur = next
	}
	return out, nil
}

// resolve returns the inode at a clean path, or a NotFound/NotDirectory error.
func resolve(tx *bbolt.Tx, p string) (*apiv1.Inode, error) {
	comps := meta.Components(p)
	inodes, err := walk(tx, comps)
	if err != nil {
		return nil, err
	}
	if len(inodes) == len(comps)+1 {
		return inodes[len(inodes)-1], nil
	}
	if last := inodes[len(inodes)-1]; !last.Folder {
		return nil, fmt.Errorf("resolve %s: %s is a file: %w", p, "/"+joinComps(comps[:len(inodes)-1]), meta.ErrNotDirectory)
	}
	return nil, fmt.Errorf("%s: %w", p, meta.ErrNotFound)
}

func joinComps(c []string) string {
	var b bytes.Buffer
	for i, s := range c {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}

// pathOf rebuilds the path of an inode from its parents.
func pathOf(tx *bbolt.Tx, ino *apiv1.Inode) (string, error) {
	var names []string
	for cur := ino; cur.Id != RootID; {
		names = append(names, cur.Name)
		parent, err := getInode(tx, cur.ParentId)
		if err != nil {
			return "", err
		}
		if parent == nil {
			return "", fmt.Errorf("path of inode %d: parent %d: %w", ino.Id, cur.ParentId, meta.ErrNotFound)
		}
		cur = parent
	}
	p := "/"
	for i := len(names) - 1; i >= 0; i-- {
		p = meta.Join(p, names[i])
	}
	return p, nil
}

// mounts reads the mount table.
func mounts(tx *bbolt.Tx) ([]*apiv1.MountPointInfo, error) {
	var out []*apiv1.MountPointInfo
	err := tx.Bucket(bMounts).ForEach(func(k, v []byte) error {
		m := &apiv1.MountPointInfo{}
		if err := proto.Unmarshal(v, m); err != nil {
			return fmt.Errorf("decode mount %s: %w", k, err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// mountOf returns the innermost mount containing p.
func mountOf(all []*apiv1.MountPointInfo, p string) *apiv1.MountPointInfo {
	var best *apiv1.MountPointInfo
	for _, m := range all {
		if meta.HasPrefix(p, m.AlcovePath) && (best == nil || len(m.AlcovePath) > len(best.AlcovePath)) {
			best = m
		}
	}
	return best
}

func counter(tx *bbolt.Tx, key []byte) int64 {
	return int64(journal.U64(tx.Bucket(journal.MetaBucket).Get(key)))
}

func setCounter(tx *bbolt.Tx, key []byte, v int64) error {
	return tx.Bucket(journal.MetaBucket).Put(key, idKey(v))
}
