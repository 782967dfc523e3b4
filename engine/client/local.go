package client

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// LocalFile is a complete file whose every block is cached by the worker on
// this node, in one cache file with block i at offset i × blockSize: File
// reads the Alcove file's bytes at their own offsets, which is what kernel
// FUSE passthrough and mmap-like users need. Every block stays leased
// against eviction until Close.
type LocalFile struct {
	// File is the worker's cache file; do not close it, call Close.
	File   *os.File
	Length int64
	Tier   string

	blocks []*shortcircuit.Block
}

// Close releases every block lease and fd. Idempotent.
func (l *LocalFile) Close() error {
	var errs []error
	for _, b := range l.blocks {
		errs = append(errs, b.Close())
	}
	l.blocks = nil
	return errors.Join(errs...)
}

// ErrNotLocal is wrapped by OpenLocalFile when the file cannot be served
// from one local cache file (not every block cached here, blocks in
// different tiers, short-circuit disabled, or an empty file).
var ErrNotLocal = errors.New("file is not fully cached in one local cache file")

// OpenLocalFile leases every block of a complete file from the local
// worker's domain socket and checks they all live in one cache file at
// their file offsets (same device and inode, offset i × blockSize, cache
// file no longer than the Alcove file). info must carry block locations
// (GetStatus does). The error wraps ErrNotLocal when the file is not
// servable this way; the caller then reads through a Reader.
func (c *Client) OpenLocalFile(ctx context.Context, info *apiv1.FileInfo) (*LocalFile, error) {
	length, bs := info.GetLength(), info.GetBlockSizeBytes()
	if c.cfg.DisableShortCircuit || info.GetFolder() || !info.GetCompleted() || length <= 0 || bs <= 0 {
		return nil, fmt.Errorf("open %s locally: %w", info.GetPath(), ErrNotLocal)
	}
	n := meta.BlockCount(length, bs)
	lf := &LocalFile{Length: length}
	fail := func(err error) (*LocalFile, error) {
		lf.Close()
		return nil, fmt.Errorf("open %s locally: %w: %w", info.GetPath(), ErrNotLocal, err)
	}
	var dev, ino uint64
	var size int64
	for idx := int64(0); idx < n; idx++ {
		if meta.IsHole(info.GetHoles(), idx) {
			continue // zeros: never written in the cache file either
		}
		bi, blen := blockInfo(info, idx)
		socket := ""
		for _, loc := range bi.GetLocations() {
			if loc.GetNode() == c.cfg.Node && loc.GetDomainSocket() != "" {
				socket = loc.GetDomainSocket()
				break
			}
		}
		if socket == "" {
			return fail(fmt.Errorf("block %d is not cached on node %s", bi.GetBlockId(), c.cfg.Node))
		}
		sc, err := c.shortCircuit(ctx, socket)
		if err != nil {
			return fail(err)
		}
		octx, cancel := c.withDataTimeout(ctx)
		b, err := sc.Open(octx, bi.GetBlockId(), bs, false, info.GetBlockToken())
		cancel()
		if err != nil {
			if !errors.Is(err, meta.ErrNotFound) {
				c.dropShortCircuit(socket)
			}
			return fail(err)
		}
		lf.blocks = append(lf.blocks, b)
		if b.Offset != idx*bs || b.Length != blen {
			return fail(fmt.Errorf("block %d is at offset %d length %d of its cache file, want %d length %d", bi.GetBlockId(), b.Offset, b.Length, idx*bs, blen))
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(b.File.Fd()), &st); err != nil {
			return fail(fmt.Errorf("stat cache file: %w", err))
		}
		if lf.File == nil {
			dev, ino = st.Dev, st.Ino
			lf.File, lf.Tier = b.File, b.Tier
		} else if st.Dev != dev || st.Ino != ino {
			return fail(fmt.Errorf("block %d is in another cache file (tier %s, the first in %s)", bi.GetBlockId(), b.Tier, lf.Tier))
		}
		size = st.Size
	}
	// Hole regions of the cache file read as zeros (never written, or
	// punched out), but a hole at the end leaves the cache file short.
	if lf.File == nil || size != length {
		return fail(fmt.Errorf("cache file is %d bytes, file is %d", size, length))
	}
	return lf, nil
}
