package meta

import (
	"fmt"
	"slices"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// Holes of a sparse file: runs of blocks that were never written. They
// have no block on any worker, read as zeros and are never lost.

// IsHole reports whether block index lies in one of the runs.
func IsHole(runs []*apiv1.BlockRun, index int64) bool {
	for _, r := range runs {
		if index >= r.GetStart() && index < r.GetStart()+r.GetCount() {
			return true
		}
	}
	return false
}

// HoleBlocks counts the blocks in the runs.
func HoleBlocks(runs []*apiv1.BlockRun) int64 {
	var n int64
	for _, r := range runs {
		n += r.GetCount()
	}
	return n
}

// HoleBytes counts the bytes of a file of length in the runs.
func HoleBytes(runs []*apiv1.BlockRun, length, blockSize int64) int64 {
	var n int64
	for _, r := range runs {
		for i := r.GetStart(); i < r.GetStart()+r.GetCount(); i++ {
			n += BlockLength(length, blockSize, i)
		}
	}
	return n
}

// ValidateHoles rejects runs that are empty, overlap, are out of order or
// lie beyond a file of blocks blocks.
func ValidateHoles(runs []*apiv1.BlockRun, blocks int64) error {
	next := int64(0)
	for _, r := range runs {
		if r.GetCount() <= 0 || r.GetStart() < next || r.GetStart()+r.GetCount() > blocks {
			return fmt.Errorf("%w: hole run [%d,+%d) in a file of %d blocks (runs must be ordered, disjoint and inside the file)",
				ErrInvalidArgument, r.GetStart(), r.GetCount(), blocks)
		}
		next = r.GetStart() + r.GetCount()
	}
	return nil
}

// AddHole appends block index to runs (indexes arrive in increasing order).
func AddHole(runs []*apiv1.BlockRun, index int64) []*apiv1.BlockRun {
	if n := len(runs); n > 0 && runs[n-1].GetStart()+runs[n-1].GetCount() == index {
		runs[n-1].Count++
		return runs
	}
	return append(runs, &apiv1.BlockRun{Start: index, Count: 1})
}

// CloneHoles copies runs.
func CloneHoles(runs []*apiv1.BlockRun) []*apiv1.BlockRun {
	out := slices.Clone(runs)
	for i, r := range out {
		out[i] = &apiv1.BlockRun{Start: r.GetStart(), Count: r.GetCount()}
	}
	return out
}
