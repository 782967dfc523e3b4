package crashfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// pageSize is the granularity of unsynced data: a write dirties whole
// pages, and a crash drops whole dirty pages (like the page cache).
const pageSize = 4096

// fileData is one regular file's contents: the durable bytes in its store
// file plus the unsynced pages and size change held in memory. It is not
// safe for concurrent use; fileNode locks around it.
//
// Each page of the live view comes from one place: dirty (written since the
// last sync), holes (punched since the last sync: zeros, reported as a
// hole), else the store file below valid, else zeros (a hole). Invariants:
// valid <= size; dirty and holes are disjoint; bytes of a dirty page beyond
// size are zero.
type fileData struct {
	store   *os.File         // durable contents; its size is durable
	durable int64            // size of the store file
	valid   int64            // store bytes [0, valid) still belong to the live file
	size    int64            // live size
	dirty   map[int64][]byte // page index → pageSize bytes written since the last sync
	holes   map[int64]bool   // pages punched since the last sync
}

func newFileData(store *os.File, size int64) *fileData {
	return &fileData{store: store, durable: size, valid: size, size: size, dirty: map[int64][]byte{}, holes: map[int64]bool{}}
}

// overlaid reports whether page pg is dirty or punched.
func (d *fileData) overlaid(pg int64) bool {
	return d.dirty[pg] != nil || d.holes[pg]
}

// readAt fills dest from the live view at off and returns how many bytes
// are there (short at the end of the file).
func (d *fileData) readAt(dest []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, nil
	}
	n := int(min(int64(len(dest)), d.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		pg, in := pos/pageSize, int(pos%pageSize)
		if p, ok := d.dirty[pg]; ok {
			done += copy(dest[done:n], p[in:])
			continue
		}
		// A run of clean pages is read from the store in one call.
		end := (pg + 1) * pageSize
		for !d.holes[pg] && end < off+int64(n) && !d.overlaid(end/pageSize) {
			end += pageSize
		}
		end = min(end, off+int64(n))
		chunk := dest[done : done+int(end-pos)]
		if d.holes[pg] {
			clear(chunk)
		} else if err := d.readClean(chunk, pos); err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return n, nil
}

// readClean reads a range of clean pages: store bytes below valid, zeros
// above.
func (d *fileData) readClean(dest []byte, off int64) error {
	k := 0
	if off < d.valid {
		k = int(min(int64(len(dest)), d.valid-off))
		if _, err := d.store.ReadAt(dest[:k], off); err != nil && err != io.EOF {
			return fmt.Errorf("read store file: %w", err)
		}
	}
	clear(dest[k:])
	return nil
}

// writeAt writes p at off into dirty pages.
func (d *fileData) writeAt(p []byte, off int64) error {
	for done := 0; done < len(p); {
		pos := off + int64(done)
		pg, in := pos/pageSize, int(pos%pageSize)
		page, ok := d.dirty[pg]
		if !ok {
			page = make([]byte, pageSize)
			if !d.holes[pg] && (in != 0 || len(p)-done < pageSize) {
				// A partial write keeps the rest of the page's live bytes.
				if err := d.readClean(page, pg*pageSize); err != nil {
					return err
				}
			}
			delete(d.holes, pg)
			d.dirty[pg] = page
		}
		done += copy(page[in:], p[done:])
	}
	d.size = max(d.size, off+int64(len(p)))
	return nil
}

// punch deallocates [off, off+n) keeping the size (FALLOC_FL_PUNCH_HOLE):
// whole pages become holes, partial pages at the edges are zeroed.
func (d *fileData) punch(off, n int64) error {
	end := min(off+n, d.size)
	if off >= end {
		return nil
	}
	first, last := (off+pageSize-1)/pageSize, end/pageSize // whole pages [first, last)
	if first >= last {
		return d.writeAt(make([]byte, end-off), off)
	}
	if edge := first * pageSize; edge > off {
		if err := d.writeAt(make([]byte, edge-off), off); err != nil {
			return err
		}
	}
	if edge := last * pageSize; edge < end {
		if err := d.writeAt(make([]byte, end-edge), edge); err != nil {
			return err
		}
	}
	for pg := first; pg < last; pg++ {
		delete(d.dirty, pg)
		d.holes[pg] = true
	}
	return nil
}

// truncate sets the live size.
func (d *fileData) truncate(size int64) {
	if size < d.size {
		for pg := range d.dirty {
			if pg*pageSize >= size {
				delete(d.dirty, pg)
			}
		}
		for pg := range d.holes {
			if pg*pageSize >= size {
				delete(d.holes, pg)
			}
		}
		if p, ok := d.dirty[size/pageSize]; ok {
			clear(p[size%pageSize:])
		}
		d.valid = min(d.valid, size)
	}
	d.size = size
}

// seek implements SEEK_DATA and SEEK_HOLE on the live view: the first
// offset at or after off in data (or in a hole; the end of the file counts
// as one).
func (d *fileData) seek(off int64, whence int) (int64, error) {
	if off < 0 || off >= d.size {
		return 0, unix.ENXIO
	}
	wantData := whence == unix.SEEK_DATA
	overlay := make([]int64, 0, len(d.dirty)+len(d.holes))
	for pg := range d.dirty {
		overlay = append(overlay, pg)
	}
	for pg := range d.holes {
		overlay = append(overlay, pg)
	}
	slices.Sort(overlay)
	for pos := off; pos < d.size; {
		pg := pos / pageSize
		var data bool
		end := (pg + 1) * pageSize
		switch {
		case d.dirty[pg] != nil:
			data = true
		case d.holes[pg]:
		default: // clean up to the next overlaid page: the store's extents below valid, a hole above
			i, _ := slices.BinarySearch(overlay, pg)
			end = d.size
			if i < len(overlay) {
				end = overlay[i] * pageSize
			}
			// Pages are whole: one partly below valid (truncated mid-page)
			// keeps its allocation, as a filesystem block does.
			if start, stored := pg*pageSize, roundUp(d.valid); start < stored {
				var err error
				if data, end, err = d.storeExtent(start, min(end, stored)); err != nil {
					return 0, err
				}
				end = roundUp(end)
			}
		}
		if data == wantData {
			return pos, nil
		}
		pos = end
	}
	if wantData {
		return 0, unix.ENXIO
	}
	return d.size, nil
}

func roundUp(n int64) int64 { return (n + pageSize - 1) / pageSize * pageSize }

// storeExtent says whether the store file has data at pos, and where that
// extent ends (at most limit).
func (d *fileData) storeExtent(pos, limit int64) (bool, int64, error) {
	fd := int(d.store.Fd())
	hole, err := unix.Seek(fd, pos, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("seek store file: %w", err)
	}
	if hole > pos {
		return true, min(hole, limit), nil
	}
	next, err := unix.Seek(fd, pos, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, limit, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("seek store file: %w", err)
	}
	return false, min(next, limit), nil
}

// unsynced reports the bytes a crash would drop now: the dirty and punched
// pages plus the size change since the last sync.
func (d *fileData) unsynced() int64 {
	n := int64(len(d.dirty)+len(d.holes)) * pageSize
	if d.size != d.durable {
		n += max(d.size-d.durable, d.durable-d.size)
	} else if d.valid != d.durable {
		n += d.durable - d.valid
	}
	return n
}

// sync makes the live view durable: the store file becomes the live bytes,
// with the punched pages punched.
func (d *fileData) sync() error {
	fd := int(d.store.Fd())
	if d.valid < d.durable {
		if err := d.store.Truncate(d.valid); err != nil {
			return fmt.Errorf("truncate store file: %w", err)
		}
		d.durable = d.valid
	}
	for pg := range d.holes {
		if off := pg * pageSize; off < d.durable {
			if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, pageSize); err != nil {
				return fmt.Errorf("punch store file: %w", err)
			}
		}
	}
	for pg, p := range d.dirty {
		n := min(int64(pageSize), d.size-pg*pageSize)
		if _, err := d.store.WriteAt(p[:n], pg*pageSize); err != nil {
			return fmt.Errorf("write store file: %w", err)
		}
		d.durable = max(d.durable, pg*pageSize+n)
	}
	if d.durable != d.size {
		if err := d.store.Truncate(d.size); err != nil {
			return fmt.Errorf("truncate store file: %w", err)
		}
		d.durable = d.size
	}
	d.valid = d.size
	clear(d.dirty)
	clear(d.holes)
	return nil
}
