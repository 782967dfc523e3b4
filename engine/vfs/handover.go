package vfs

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// NodeState is a node as a live handover passes it to a successor daemon
// (JSON; field names are part of the handover protocol).
type NodeState struct {
	Ino     uint64      `json:"ino"`
	Parent  uint64      `json:"parent,omitempty"`
	Name    string      `json:"name,omitempty"`
	Path    string      `json:"path"`
	Dir     bool        `json:"dir,omitempty"`
	Symlink bool        `json:"symlink,omitempty"`
	FileID  int64       `json:"fileId"`
	Stage   *StageState `json:"stage,omitempty"`
	// Orphan: unlinked while open; the master keeps it for this
	// session until its last close.
	Orphan bool `json:"orphan,omitempty"`
	// Fresh: created by this mount and not committed yet (incomplete in
	// the master); the first commit writes into it.
	Fresh bool `json:"fresh,omitempty"`
}

// typ is the node type the state describes.
func (ns *NodeState) typ() uint32 {
	switch {
	case ns.Dir:
		return syscall.S_IFDIR
	case ns.Symlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// StageState is a node's staging file in a handover.
type StageState struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Dirty bool   `json:"dirty"`
}

// State returns n's handover state.
func (n *Node) State() NodeState {
	ns := NodeState{Ino: n.ino, Dir: n.typ == syscall.S_IFDIR, Symlink: n.typ == syscall.S_IFLNK}
	n.v.treeMu.RLock()
	ns.Path, _ = n.pathLocked()
	if n.parent != nil {
		ns.Parent, ns.Name = n.parent.ino, n.name
	}
	n.v.treeMu.RUnlock()
	n.mu.Lock()
	ns.FileID = n.fileID
	ns.Orphan = n.orphaned
	ns.Fresh = n.fresh != nil
	st := n.stage
	n.mu.Unlock()
	if st != nil {
		ns.Stage = &StageState{Path: st.path, Size: st.Size(), Dirty: st.dirty.Load()}
	}
	return ns
}

// Restore rebuilds a predecessor's nodes (parents before children) and
// reopens their staging files; a node whose parent is not among them keeps
// its path. The FUSE layer then reopens the open files (Open, which takes
// the stages over) and calls FinishRestore.
func (v *VFS) Restore(nodes []NodeState) error {
	sort.SliceStable(nodes, func(i, j int) bool {
		return strings.Count(nodes[i].Path, "/") < strings.Count(nodes[j].Path, "/")
	})
	v.treeMu.Lock()
	defer v.treeMu.Unlock()
	for _, ns := range nodes {
		n := v.newNode(ns.Ino, ns.typ(), ns.FileID)
		n.orphaned = ns.Orphan
		if ns.Fresh {
			// Without a path or write token: the first commit writes a
			// temporary sibling and renames it over the file.
			n.fresh = &apiv1.FileInfo{FileId: ns.FileID}
		}
		if ns.Stage != nil {
			f, err := os.OpenFile(ns.Stage.Path, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("reopen staging file of %s: %w", ns.Path, err)
			}
			n.stage = &stage{f: f, path: ns.Stage.Path, size: ns.Stage.Size}
			n.stage.dirty.Store(ns.Stage.Dirty)
		}
		parent := v.nodes[ns.Parent]
		if ns.Parent == 0 || ns.Name == "" || parent == nil {
			n.orphanPath = ns.Path
		}
		v.nodes[ns.Ino] = n
		if n.orphanPath == "" {
			v.attachLocked(parent, ns.Name, n)
		}
	}
	return nil
}

// FinishRestore commits the restored stages that no reopened file took
// over: they still carry data.
func (v *VFS) FinishRestore(ctx context.Context) {
	v.treeMu.RLock()
	var orphans []*Node
	for _, n := range v.nodes {
		orphans = append(orphans, n)
	}
	v.treeMu.RUnlock()
	for _, n := range orphans {
		n.mu.Lock()
		st := n.stage
		unused := st != nil && st.refs == 0
		if unused {
			st.refs = 1
		}
		n.mu.Unlock()
		if !unused {
			continue
		}
		octx, cancel := opCtx(ctx)
		if e := n.releaseStage(octx, st); e != 0 {
			p, _ := n.path()
			v.logger.Error(e, "Commit of a handed-over staging file failed", "path", p)
		}
		cancel()
	}
	for _, n := range orphans {
		n.mu.Lock()
		done := n.orphaned && n.opens == 0
		n.mu.Unlock()
		if done {
			n.releaseOrphan(ctx) // unlinked, and no reopened file holds it
		}
	}
}
