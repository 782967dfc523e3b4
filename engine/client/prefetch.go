package client

import (
	"io"
	"sync"

	"github.com/alcove-io/alcove/engine/meta"
)

// Sequential reads of blocks cached on another node are fetched ahead in
// segments over several data-port connections at once: one TCP stream on
// loopback or a LAN tops out well below what a few streams carry together.
const (
	segmentSize    = 8 << 20
	prefetchWindow = 4
)

var segmentPool = sync.Pool{New: func() any { b := make([]byte, segmentSize); return &b }}

// segment is one range of the file being fetched into a pooled buffer.
type segment struct {
	off, n int64
	buf    *[]byte
	read   int64 // bytes already handed to the reader
	kind   string
	err    error
	done   chan struct{}
}

// prefetcher keeps up to prefetchWindow segments in flight ahead of pos.
type prefetcher struct {
	r    *Reader
	segs []*segment
}

// remoteOnly reports whether block idx is cached, but not on this node
// (or short-circuit is off): the case prefetching is for. Misses are read
// as whole blocks so the worker caches them in one pass.
func (r *Reader) remoteOnly(idx int64) bool {
	bi, _ := blockInfo(r.Info(), idx)
	if len(bi.GetLocations()) == 0 {
		return false
	}
	for _, l := range bi.GetLocations() {
		if l.GetNode() == r.c.cfg.Node && l.GetDomainSocket() != "" && !r.c.cfg.DisableShortCircuit {
			return false
		}
		if l.GetDataAddress() == "" || r.c.cfg.DisableDataPort {
			return false
		}
	}
	return true
}

// head waits for the segment at r.pos and returns its unread bytes,
// scheduling more segments as it goes.
func (p *prefetcher) head() ([]byte, error) {
	r := p.r
	if len(p.segs) > 0 && p.segs[0].off+p.segs[0].read != r.pos {
		p.discard() // the reader seeked
	}
	p.fill()
	s := p.segs[0]
	<-s.done
	if s.err != nil {
		p.discard()
		return nil, s.err
	}
	return (*s.buf)[s.read:s.n], nil
}

// consume marks n bytes of the head segment as handed to the reader.
func (p *prefetcher) consume(n int) {
	s := p.segs[0]
	s.read += int64(n)
	p.r.count(s.kind, n)
	if s.read == s.n {
		segmentPool.Put(s.buf)
		p.segs = p.segs[1:]
		p.fill()
	}
}

// read copies from the head segment into b.
func (p *prefetcher) read(b []byte) (int, error) {
	data, err := p.head()
	if err != nil {
		return 0, err
	}
	n := copy(b, data)
	p.consume(n)
	return n, nil
}

// fill schedules segments after the last one (or from r.pos) while they
// stay within remotely cached blocks.
func (p *prefetcher) fill() {
	r := p.r
	info := r.Info()
	length, bs := info.GetLength(), info.GetBlockSizeBytes()
	next := r.pos
	if len(p.segs) > 0 {
		last := p.segs[len(p.segs)-1]
		next = last.off + last.n
	}
	for len(p.segs) < prefetchWindow && next < length {
		idx := next / bs
		if len(p.segs) > 0 && !r.remoteOnly(idx) {
			return
		}
		n := min(segmentSize, meta.BlockLength(length, bs, idx)-next%bs)
		s := &segment{off: next, n: n, buf: segmentPool.Get().(*[]byte), done: make(chan struct{})}
		go p.fetch(s)
		p.segs = append(p.segs, s)
		next += n
	}
}

func (p *prefetcher) fetch(s *segment) {
	defer close(s.done)
	r := p.r
	bs := r.Info().GetBlockSizeBytes()
	var got int64
	for attempt := 0; ; attempt++ {
		off := s.off + got
		src, err := r.open(off/bs, off%bs, s.n-got)
		if err == nil {
			s.kind = src.kind
			var n int
			n, err = io.ReadFull(&readerAt{src, off % bs}, (*s.buf)[got:s.n])
			got += int64(n)
			src.close()
			r.sourceFailed(src, err)
		}
		if err == nil || attempt >= maxReadRetries || !r.retryable(err) {
			s.err = err
			return
		}
	}
}

// discard drops every segment; buffers return to the pool once their
// fetches end.
func (p *prefetcher) discard() {
	for _, s := range p.segs {
		go func(s *segment) {
			<-s.done
			segmentPool.Put(s.buf)
		}(s)
	}
	p.segs = nil
}
