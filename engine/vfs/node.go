package vfs

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// Node is a file, directory or symbolic link, identified by its inode
// number: the master's, which stays when a commit gives the file a new
// Alcove file id. Its place in the tree (parent and name) is the VFS's,
// kept up to date by Lookup, Create, Mkdir, Symlink, Rename, Unlink and
// Rmdir; its Alcove path is derived from it.
type Node struct {
	v   *VFS
	ino uint64
	typ uint32 // S_IFDIR, S_IFREG or S_IFLNK

	// Tree links, guarded by v.treeMu. A node with no parent is the root,
	// unlinked (removed or replaced by a rename), or a node handed over
	// without its parent (orphanPath set).
	parent     *Node
	name       string
	children   map[string]*Node
	orphanPath string

	openMu sync.Mutex // serializes opens: the io-mode decision must see the other opens
	mu     sync.Mutex
	cond   *sync.Cond // on mu; broadcast when an open count or releasing drops
	fileID int64      // current Alcove file id
	stage  *stage     // written, possibly uncommitted content
	// fresh is the file as this VFS created it (O_CREAT), incomplete in
	// the master until its first commit writes the stage into it: no
	// temporary sibling, no rename (see commitFresh).
	fresh *apiv1.FileInfo
	// openPassthrough / openCached count open handles by kernel io mode:
	// the kernel refuses to mix passthrough and page-cache opens of one
	// inode.
	openPassthrough int
	openCached      int
	pt              *client.LocalFile // leased cache file while openPassthrough > 0
	// releasing counts RELEASE requests of this node in progress at the
	// FUSE layer (BeginRelease); opens wait for them.
	releasing int
	waiting   int // opens waiting in waitLocked (tests watch it)
	// cachedVersion is the (file id, length, mtime) last served with
	// KeepCache; a change drops the kernel's page cache.
	cachedVersion string
	// seen is the node's attributes as last seen (hasAttr): permission
	// checks use them, as the kernel uses the attributes it cached, and a
	// node gone from the namespace answers from them.
	seen    Attr
	hasAttr bool
	// opens counts the node's open handles. A file unlinked while open is
	// an orphan in the master (orphaned) until the last one closes.
	opens     int
	orphaned  bool
	orphaning int    // removes of n in flight while it is open (holdOpen)
	target    string // a symbolic link's target, once seen
	// listing is a directory's last Readdir (names to metadata), taken at
	// VFS generation listedGen and time listedAt: READDIRPLUS looks up
	// every entry right after listing it, and those lookups are answered
	// from here (see fromListing).
	listing   map[string]*apiv1.FileInfo
	listedGen uint64
	listedAt  time.Time
}

// listingTTL is how long a directory listing answers lookups: the age of
// attributes the kernel may keep anyway (the default attribute timeout).
// maxListing bounds the entries kept (a larger directory's lookups go to
// the master): the metadata of a huge directory is not held in memory.
const (
	listingTTL = time.Second
	maxListing = 1 << 16
)

// DoneListing drops directory n's listing: the directory handle that read
// it was closed, so no READDIRPLUS of it follows.
func (v *VFS) DoneListing(n *Node) {
	n.mu.Lock()
	n.listing = nil
	n.mu.Unlock()
}

// fromListing returns name's metadata from n's last listing while it is
// young and nothing changed through this VFS since it was taken; each
// entry answers one lookup.
func (n *Node) fromListing(name string) *apiv1.FileInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listing == nil {
		return nil
	}
	if n.listedGen != n.v.gen.Load() || time.Since(n.listedAt) > listingTTL {
		n.listing = nil
		return nil
	}
	info := n.listing[name]
	delete(n.listing, name)
	return info
}

func (v *VFS) newNode(ino uint64, typ uint32, fileID int64) *Node {
	n := &Node{v: v, ino: ino, typ: typ, fileID: fileID}
	n.cond = sync.NewCond(&n.mu)
	return n
}

// lastAttr returns n's attributes as last seen, asking Alcove when none
// were seen yet (the root, a node restored by a handover).
func (n *Node) lastAttr(ctx context.Context) (Attr, syscall.Errno) {
	n.mu.Lock()
	a, ok := n.seen, n.hasAttr
	n.mu.Unlock()
	if ok {
		return a, 0
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	e := n.getattr(octx, &a)
	return a, e
}

// Ino is the node's inode number.
func (n *Node) Ino() uint64 { return n.ino }

// IsDir reports whether the node is a directory.
func (n *Node) IsDir() bool { return n.typ == syscall.S_IFDIR }

// Type is the node's file type (S_IFDIR, S_IFREG or S_IFLNK).
func (n *Node) Type() uint32 { return n.typ }

// path is the node's Alcove path; false when the node is no longer in
// the namespace (unlinked, or under an unlinked directory).
func (n *Node) path() (string, bool) {
	n.v.treeMu.RLock()
	defer n.v.treeMu.RUnlock()
	return n.pathLocked()
}

func (n *Node) pathLocked() (string, bool) {
	var names []string
	x := n
	for x != n.v.root {
		if x.parent == nil {
			if x.orphanPath == "" {
				return "", false
			}
			return meta.Join(x.orphanPath, reversed(names)...), true
		}
		names = append(names, x.name)
		x = x.parent
	}
	return meta.Join(n.v.cfg.Root, reversed(names)...), true
}

func reversed(s []string) []string {
	slices.Reverse(s)
	return s
}

// childPath is the Alcove path of name in directory n.
func (n *Node) childPath(name string) (string, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	return meta.Join(p, name), 0
}

// pathOrErr is n's path, or ENOENT for an unlinked node.
func (n *Node) pathOrErr() (string, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	return p, 0
}

// linkChild returns the node for info at name in n, reusing the node the
// VFS has for it: the one at name when it still is the same Alcove file (a
// commit keeps the node, not the id), else the one with its inode number.
func (n *Node) linkChild(name string, info *apiv1.FileInfo) *Node {
	v := n.v
	ino, typ := inoOf(info), typeOf(info)
	v.treeMu.Lock()
	ch := v.nodes[ino]
	if ch == nil || ch.typ != typ {
		ch = v.newNode(ino, typ, info.GetFileId())
		v.nodes[ch.ino] = ch
	}
	if ch.parent != n || ch.name != name {
		v.attachLocked(n, name, ch)
	}
	v.treeMu.Unlock()
	// n.mu is never taken under treeMu: openStage holds n.mu while it
	// resolves the path.
	ch.mu.Lock()
	if ch.stage == nil {
		ch.fileID = info.GetFileId() // committed elsewhere meanwhile
	}
	ch.mu.Unlock()
	return ch
}

func (n *Node) currentID() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fileID
}

// gone reports whether n left the namespace while open: an orphan, read
// and written by file id until its last close.
func (n *Node) gone() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.orphaned
}

// attachLocked links ch as name in parent, unlinking whatever was there
// and wherever ch was before. v.treeMu is held.
func (v *VFS) attachLocked(parent *Node, name string, ch *Node) {
	if old := parent.children[name]; old != nil && old != ch {
		v.detachLocked(old)
	}
	v.detachLocked(ch)
	if parent.children == nil {
		parent.children = map[string]*Node{}
	}
	parent.children[name] = ch
	ch.parent, ch.name, ch.orphanPath = parent, name, ""
}

// detachLocked unlinks n from its parent. v.treeMu is held.
func (v *VFS) detachLocked(n *Node) {
	if n.parent != nil && n.parent.children[n.name] == n {
		delete(n.parent.children, n.name)
	}
	n.parent, n.name = nil, ""
}

// unlinkChild drops name from n's children (after a successful remove).
func (n *Node) unlinkChild(name string) {
	n.v.treeMu.Lock()
	defer n.v.treeMu.Unlock()
	if ch := n.children[name]; ch != nil {
		n.v.detachLocked(ch)
	}
}

// Forget drops a node nobody references any more (the kernel forgot it).
func (v *VFS) Forget(n *Node) {
	if n == v.root {
		return
	}
	v.treeMu.Lock()
	defer v.treeMu.Unlock()
	if v.nodes[n.ino] == n {
		delete(v.nodes, n.ino)
	}
	v.detachLocked(n)
}

// Parent returns n's parent's inode number and n's name in it; false when
// n is the root or not linked.
func (n *Node) Parent() (uint64, string, bool) {
	n.v.treeMu.RLock()
	defer n.v.treeMu.RUnlock()
	if n.parent == nil {
		return 0, "", false
	}
	return n.parent.ino, n.name, true
}
