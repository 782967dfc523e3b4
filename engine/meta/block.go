package meta

import "fmt"

const (
	// DefaultBlockSize is the default block size, as in Alluxio.
	DefaultBlockSize int64 = 64 << 20
	// blockIndexBits is how many low bits of a block id number the block
	// within its file (Alluxio's container id / sequence number split).
	blockIndexBits = 24
	// MaxBlocksPerFile bounds a file's block count.
	MaxBlocksPerFile = 1 << blockIndexBits
)

// BlockID builds the id of block index of file fileID.
func BlockID(fileID int64, index int64) int64 { return fileID<<blockIndexBits | index }

// FileIDOf returns the file a block belongs to.
func FileIDOf(blockID int64) int64 { return blockID >> blockIndexBits }

// BlockIndexOf returns the index of a block within its file.
func BlockIndexOf(blockID int64) int64 { return blockID & (MaxBlocksPerFile - 1) }

// BlockCount returns how many blocks a file of length bytes has; an inode
// without a block size (a symbolic link) has none, rather than a division by zero.
func BlockCount(length, blockSize int64) int64 {
	if length <= 0 || blockSize <= 0 {
		return 0
	}
	return (length + blockSize - 1) / blockSize
}

// BlockLength returns the length of block index of a file.
func BlockLength(length, blockSize, index int64) int64 {
	start := index * blockSize
	if start >= length {
		return 0
	}
	return min(blockSize, length-start)
}

// ValidateBlockSize rejects block sizes that cannot address a file.
func ValidateBlockSize(bs int64) error {
	if bs <= 0 || bs > 1<<40 {
		return fmt.Errorf("%w: block size %d must be in (0, 1 TiB]", ErrInvalidArgument, bs)
	}
	return nil
}
