package worker

import (
	"fmt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Every data request carries a block token the master signed
// (engine/security): the worker serves a file's blocks only to a holder of
// a token for that file, and reads or writes the UFS only at the location
// and with the block size the token binds — never where a client says.

// authorize checks tok for access a to the file of block id (cached data:
// a short-circuit open, a cache hit).
func (w *Worker) authorize(tok []byte, blockID int64, a security.Access) error {
	if err := w.tokens.Verify(tok, security.Scope{FileID: meta.FileIDOf(blockID), Access: a}, false); err != nil {
		return fmt.Errorf("block %d: %w", blockID, err)
	}
	return nil
}

// authorizeUFS checks that a read-through of block id reads the UFS where
// the master put the file, at the block's own offset.
func (w *Worker) authorizeUFS(tok []byte, blockID, blockSize int64, src *apiv1.UfsBlockSource) error {
	if src.GetBlockOffset() != meta.BlockIndexOf(blockID)*blockSize {
		return fmt.Errorf("block %d: %w: UFS offset %d is not the block's (%d × %d)", blockID, meta.ErrPermission, src.GetBlockOffset(), meta.BlockIndexOf(blockID), blockSize)
	}
	scope := security.Scope{FileID: meta.FileIDOf(blockID), Access: security.AccessRead, MountID: src.GetMountId(), UfsPath: src.GetUfsPath(), BlockSize: blockSize}
	if err := w.tokens.Verify(tok, scope, true); err != nil {
		return fmt.Errorf("block %d: %w", blockID, err)
	}
	return nil
}

// authorizeWrite checks a WriteFile header: a write token of that file,
// binding its UFS path, mount and block size.
func (w *Worker) authorizeWrite(h *apiv1.WriteFileHeader) error {
	scope := security.Scope{FileID: h.GetFileId(), Access: security.AccessWrite, MountID: h.GetMountId(), UfsPath: h.GetUfsPath(), BlockSize: h.GetBlockSizeBytes()}
	if err := w.tokens.Verify(h.GetBlockToken(), scope, true); err != nil {
		return fmt.Errorf("write file %d: %w", h.GetFileId(), err)
	}
	return nil
}
