package vfs

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// Sparse files. A stage is a local sparse file: a write far past the end
// leaves a hole that takes no disk. A commit finds the holes with
// SEEK_DATA and sends every block that holds no data as a hole (no block
// is written or cached; the master records it, readers get zeros), so a
// commit needs cache space only for the data. Staging a file's content
// back (to append or patch it) leaves its holes unwritten too.

// nextData is the offset of the first data at or after off in f, or end
// when there is none before end. A filesystem without SEEK_DATA reports
// everything as data (no holes, never wrong).
func nextData(f *os.File, off, end int64) int64 {
	d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return end // only a hole from off on
	case err != nil:
		return off
	}
	return min(d, end)
}

// writeSparse writes the first size bytes of f to w, block by block (bs),
// skipping the blocks that are holes in f.
func writeSparse(w *client.Writer, f *os.File, size, bs int64) error {
	for pos := int64(0); pos < size; {
		d := nextData(f, pos, size)
		if d-pos >= bs || d == size {
			// Whole blocks without data (or the rest of the file).
			end := size
			if d < size {
				end = d - d%bs
			}
			if err := w.Skip(end - pos); err != nil {
				return err
			}
			pos = end
			continue
		}
		end := min(pos+bs, size)
		if _, err := w.ReadFrom(io.NewSectionReader(f, pos, end-pos)); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// copySparse copies the committed content r (described by info) into f,
// leaving its holes unwritten, and returns its length.
func copySparse(f *os.File, r *client.Reader, info *apiv1.FileInfo) (int64, error) {
	length, holes := info.GetLength(), info.GetHoles()
	if len(holes) == 0 {
		return io.Copy(f, r)
	}
	bs := info.GetBlockSizeBytes()
	for idx := range meta.BlockCount(length, bs) {
		if meta.IsHole(holes, idx) {
			continue
		}
		off := idx * bs
		n := meta.BlockLength(length, bs, idx)
		if _, err := io.Copy(io.NewOffsetWriter(f, off), io.NewSectionReader(r, off, n)); err != nil {
			return 0, err
		}
	}
	return length, f.Truncate(length)
}

// allocated is the disk space the stage takes (its holes take none).
func (s *stage) allocated() int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return s.Size()
	}
	return st.Blocks * 512
}
