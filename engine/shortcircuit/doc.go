// Package shortcircuit is the worker's unix domain socket protocol: a local
// client asks for a cached block and receives the open cache file's fd
// (SCM_RIGHTS) with the block's offset and length, then reads it directly.
//
// Frames are a 4-byte big-endian length followed by a marshaled
// apiv1.ShortCircuitRequest or apiv1.ShortCircuitResponse. The server answers
// every request, in order; a successful OPEN response carries the fd. A block
// opened on a connection stays leased (never evicted or moved) until the
// client sends CLOSE for it or the connection ends.
package shortcircuit
