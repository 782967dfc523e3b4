package worker

import (
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// mappedRange is a read-only mapping of a leased block range whose chunks
// gRPC sends straight from the page cache (one copy fewer than pread). The
// mapping and the block lease live until gRPC has freed every chunk: a
// block is never punched or evicted under a live mapping.
type mappedRange struct {
	data    []byte // the mapping
	refs    atomic.Int64
	release func() // ends the block lease
}

// Get implements mem.BufferPool; chunks are never allocated from it.
func (m *mappedRange) Get(int) *[]byte { panic("mappedRange.Get") }

// Put implements mem.BufferPool: gRPC frees a chunk.
func (m *mappedRange) Put(*[]byte) { m.unref() }

func (m *mappedRange) unref() {
	if m.refs.Add(-1) == 0 {
		unix.Munmap(m.data)
		m.release()
	}
}

// sendMapped streams n bytes of f from off out of a mapping. It takes over
// release (called once the last chunk is freed, even on error).
func sendMapped(stream grpc.ServerStream, f *os.File, off, n, chunk int64, release func()) error {
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	data, err := unix.Mmap(int(f.Fd()), start, int(off-start+n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		release()
		return fmt.Errorf("map cache file: %w", err)
	}
	m := &mappedRange{data: data, release: release}
	m.refs.Store(1) // ours, dropped on return
	defer m.unref()
	body := data[off-start:]
	for len(body) > 0 {
		size := min(chunk, int64(len(body)))
		part := body[:size:size]
		body = body[size:]
		if size < 4<<10 { // too small for gRPC to pool: copy it
			buf := chunkPool.Get(int(size))
			copy(*buf, part)
			if err := stream.SendMsg(&rawChunk{buf: buf}); err != nil {
				return fmt.Errorf("send chunk: %w", err)
			}
			continue
		}
		m.refs.Add(1)
		if err := stream.SendMsg(&mappedChunk{m: m, data: part}); err != nil {
			return fmt.Errorf("send chunk: %w", err)
		}
	}
	return nil
}

// mappedChunk is a DataChunk whose data is part of a mappedRange.
type mappedChunk struct {
	m    *mappedRange
	data []byte
}

func (c *mappedChunk) buffer() mem.Buffer { return mem.NewBuffer(&c.data, c.m) }
