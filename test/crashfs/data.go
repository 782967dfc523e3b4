package crashfs

import (
	"fmt"
	"io"
	"os"
)

// pageSize is the granularity of unsynced data: a write dirties whole
// pages, and a crash drops whole dirty pages (like the page cache).
const pageSize = 4096

// fileData is one regular file's contents: the durable bytes in its store
// file plus the unsynced pages and size change held in memory. It is not
// safe for concurrent use; fileNode locks around it.
//
// Invariants: valid <= size; bytes of a dirty page beyond size are zero; the
// live view of byte i is dirty[i/pageSize] if present, else the store file's
// byte i when i < valid, else zero.
type fileData struct {
	store   *os.File         // durable contents; its size is durable
	durable int64            // size of the store file
	valid   int64            // store bytes [0, valid) still belong to the live file
	size    int64            // live size
	dirty   map[int64][]byte // page index → pageSize bytes written since the last sync
}

func newFileData(store *os.File, size int64) *fileData {
	return &fileData{store: store, durable: size, valid: size, size: size, dirty: map[int64][]byte{}}
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
		for end < off+int64(n) && d.dirty[end/pageSize] == nil {
			end += pageSize
		}
		end = min(end, off+int64(n))
		if err := d.readClean(dest[done:done+int(end-pos)], pos); err != nil {
			return done, err
		}
		done += int(end - pos)
	}
	return n, nil
}

// readClean reads a range no dirty page covers: store bytes below valid,
// zeros above.
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
			if in != 0 || len(p)-done < pageSize {
				// A partial write keeps the rest of the page's live bytes.
				if err := d.readClean(page, pg*pageSize); err != nil {
					return err
				}
			}
			d.dirty[pg] = page
		}
		done += copy(page[in:], p[done:])
	}
	d.size = max(d.size, off+int64(len(p)))
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
		if p, ok := d.dirty[size/pageSize]; ok {
			clear(p[size%pageSize:])
		}
		d.valid = min(d.valid, size)
	}
	d.size = size
}

// unsynced reports the bytes a crash would drop now: the dirty pages plus
// the size change since the last sync.
func (d *fileData) unsynced() int64 {
	n := int64(len(d.dirty)) * pageSize
	if d.size != d.durable {
		n += max(d.size-d.durable, d.durable-d.size)
	} else if d.valid != d.durable {
		n += d.durable - d.valid
	}
	return n
}

// sync makes the live view durable: the store file becomes the live bytes.
func (d *fileData) sync() error {
	if d.valid < d.durable {
		if err := d.store.Truncate(d.valid); err != nil {
			return fmt.Errorf("truncate store file: %w", err)
		}
		d.durable = d.valid
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
	return nil
}
