package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/alcove-io/alcove/engine/fsutil"
)

// manifestName is a tier's record of its committed blocks. It lives in the
// tier directory, beside the data it describes, so that the two survive (or
// vanish, as a MEM tier's tmpfs does on reboot) together.
const manifestName = ".alcove-manifest"

// Manifest format: a header, then fixed-size records appended as blocks are
// committed and dropped. Every piece carries a CRC32C, so a record torn by
// a crash ends the log there.
//
//	header  "ALCVMAN1" ‖ u16 n ‖ cluster id (n bytes) ‖ u32 crc
//	record  op ('A' add, 'D' drop) ‖ u64 block id ‖ u64 block size ‖ u64 length ‖ u32 crc
const (
	manifestMagic = "ALCVMAN1"
	recordSize    = 1 + 8 + 8 + 8 + 4
	opAdd         = 'A'
	opDrop        = 'D'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type manifestRecord struct {
	op                         byte
	blockID, blockSize, length int64
}

// manifest appends a tier's block commits and drops. Appends and rewrites
// happen under Store.mu, so a compaction sees every appended record's
// block in the store's index; mu guards the file against a concurrent flush.
type manifest struct {
	dir  string
	sync bool // fsync adds (non-MEM tiers)

	mu      sync.Mutex
	f       *os.File
	records int // records in the file (live and dead), to decide compaction
}

func (m *manifest) path() string { return filepath.Join(m.dir, manifestName) }

// loadManifest reads a tier's manifest: the cluster id it was written for
// and its records up to the first torn or corrupt one. A missing or
// unreadable manifest reads as empty (the tier's cache files are then
// discarded: nothing proves they are whole).
func loadManifest(dir string) (clusterID string, recs []manifestRecord, err error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("read block manifest in %s: %w", dir, err)
	}
	if len(data) < len(manifestMagic)+2+4 || !bytes.Equal(data[:len(manifestMagic)], []byte(manifestMagic)) {
		return "", nil, nil
	}
	n := int(binary.BigEndian.Uint16(data[len(manifestMagic):]))
	hdrLen := len(manifestMagic) + 2 + n
	if len(data) < hdrLen+4 || crc32.Checksum(data[:hdrLen], castagnoli) != binary.BigEndian.Uint32(data[hdrLen:]) {
		return "", nil, nil
	}
	clusterID = string(data[len(manifestMagic)+2 : hdrLen])
	for rest := data[hdrLen+4:]; len(rest) >= recordSize; rest = rest[recordSize:] {
		r := rest[:recordSize]
		if crc32.Checksum(r[:recordSize-4], castagnoli) != binary.BigEndian.Uint32(r[recordSize-4:]) || (r[0] != opAdd && r[0] != opDrop) {
			break
		}
		recs = append(recs, manifestRecord{
			op:        r[0],
			blockID:   int64(binary.BigEndian.Uint64(r[1:])),
			blockSize: int64(binary.BigEndian.Uint64(r[9:])),
			length:    int64(binary.BigEndian.Uint64(r[17:])),
		})
	}
	return clusterID, recs, nil
}

func appendRecord(buf []byte, r manifestRecord) []byte {
	start := len(buf)
	buf = append(buf, r.op)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.blockID))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.blockSize))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.length))
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// rewrite replaces the manifest atomically (temp file, fsync, rename, fsync
// of the directory) with a header for clusterID and one add record per
// live block, and reopens it for appending.
func (m *manifest) rewrite(clusterID string, live []manifestRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(clusterID) > 1<<16-1 {
		return fmt.Errorf("write block manifest in %s: cluster id of %d bytes", m.dir, len(clusterID))
	}
	buf := append([]byte(manifestMagic), 0, 0)
	binary.BigEndian.PutUint16(buf[len(manifestMagic):], uint16(len(clusterID)))
	buf = append(buf, clusterID...)
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	for _, r := range live {
		buf = appendRecord(buf, r)
	}
	tmp := m.path() + ".tmp"
	if err := writeFileSync(tmp, buf); err != nil {
		return fmt.Errorf("write block manifest in %s: %w", m.dir, err)
	}
	if err := os.Rename(tmp, m.path()); err != nil {
		return fmt.Errorf("install block manifest in %s: %w", m.dir, err)
	}
	if err := fsutil.SyncDir(m.dir); err != nil {
		return err
	}
	f, err := os.OpenFile(m.path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open block manifest in %s: %w", m.dir, err)
	}
	if m.f != nil {
		m.f.Close()
	}
	m.f, m.records = f, len(live)
	return nil
}

// add records a committed block (callers hold Store.mu, which orders
// appends with compaction). The block's data must already be durable, and
// the record is durable once sync returns: it is what makes the block count
// as cached after a restart.
func (m *manifest) add(id, blockSize, length int64) error {
	return m.append(manifestRecord{op: opAdd, blockID: id, blockSize: blockSize, length: length})
}

// drop records that a block is gone (callers hold Store.mu). It is not
// fsynced before the range is punched: a drop lost to a power cut leaves an
// add whose range is a hole, and restore checks every range for holes; a
// range written again since holds the same block's bytes (block ids are
// never reused within a cluster, and the cluster id guards the rest).
func (m *manifest) drop(id int64) error {
	return m.append(manifestRecord{op: opDrop, blockID: id})
}

func (m *manifest) append(r manifestRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return fmt.Errorf("append to block manifest in %s: %w", m.dir, os.ErrClosed)
	}
	if _, err := m.f.Write(appendRecord(make([]byte, 0, recordSize), r)); err != nil {
		return fmt.Errorf("append to block manifest in %s: %w", m.dir, err)
	}
	m.records++
	return nil
}

// flush makes every record appended so far durable (a no-op on MEM, whose
// tmpfs keeps written bytes as long as the data itself survives).
func (m *manifest) flush() error {
	if !m.sync {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return fmt.Errorf("fsync block manifest in %s: %w", m.dir, os.ErrClosed)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("fsync block manifest in %s: %w", m.dir, err)
	}
	return nil
}

// needsCompaction reports whether dead records outnumber live ones enough
// to rewrite the log.
func (m *manifest) needsCompaction(live int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.records > 4096 && m.records > 4*live
}

func (m *manifest) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

func writeFileSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
