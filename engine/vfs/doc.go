// Package vfs is Alcove's POSIX filesystem, independent of any kernel
// interface: nodes by inode number and their place in the tree, open
// handles, stage-and-commit writes, the passthrough / page-cache decision
// per open, and the node state a live handover passes on. engine/fuse
// adapts go-fuse's node API onto it; the tests here drive it directly, in
// process, without root or /dev/fuse.
//
// It talks to Alcove through the small Client interface (consumer side;
// *client.Client satisfies it). Every operation takes the caller (uid,
// gid, pid) and passes through one permission hook (access), so owners
// and permissions can be enforced in one place. Nodes are identified by
// inode number; a removed node stays valid (unlinked) for as long as the
// FUSE layer references it. See README.md.
package vfs
