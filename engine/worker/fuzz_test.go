package worker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/meta"
)

// FuzzDataPort sends arbitrary bytes to a real worker's raw data port (the
// wire a remote client or an attacker reaches on 29998). Properties: the
// worker never panics; it answers every request frame it could decode, in
// order, with a header and exactly the bytes the header announces (an
// answer may only be cut short by a block failing mid-stream, which ends the
// connection); it stops at the first undecodable frame; and afterwards it
// still serves a real read correctly.
func FuzzDataPort(f *testing.F) {
	e := newEnv(f)
	data := randBytes(11, 2*testBS+4321)
	ufsPath := e.ufsFile("dp", data)
	e.readFile(21, ufsPath, true, int64(len(data)), apiv1.ReadType_CACHE)
	blen := meta.BlockLength(int64(len(data)), testBS, 2)
	for _, reqs := range [][]*apiv1.ReadBlockRequest{
		{{BlockId: meta.BlockID(21, 0), Length: -1, BlockLength: testBS, BlockSizeBytes: testBS}},
		{{BlockId: meta.BlockID(21, 1), Offset: 777, Length: 10000, BlockLength: testBS, BlockSizeBytes: testBS},
			{BlockId: meta.BlockID(99, 0), Length: -1, BlockLength: 10, BlockSizeBytes: testBS, Ufs: &apiv1.UfsBlockSource{UfsPath: "/nowhere"}}},
		{{BlockId: meta.BlockID(22, 2), Offset: 100, Length: -1, BlockLength: blen, BlockSizeBytes: testBS, ReadType: apiv1.ReadType_NO_CACHE,
			Ufs: &apiv1.UfsBlockSource{UfsPath: ufsPath, BlockOffset: 2 * testBS, Persisted: true}}},
		{{BlockId: meta.BlockID(21, 0), Offset: testBS, Length: -1}, {BlockId: meta.BlockID(21, 0), Offset: testBS + 1}},
	} {
		var b []byte
		for _, r := range reqs {
			var err error
			if b, err = frame.Append(b, r); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 1})
	var checks int64
	f.Fuzz(func(t *testing.T, in []byte) {
		want := decodable(in)
		c, err := net.Dial("tcp", e.w.DataAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		wrote := make(chan error, 1)
		go func() {
			_, err := c.Write(in)
			c.(*net.TCPConn).CloseWrite()
			wrote <- err
		}()
		out, err := io.ReadAll(c)
		// A reset (the worker closed with input unread) may drop answers in flight.
		reset := isReset(err)
		if err != nil && !reset {
			t.Fatalf("read answers: %v", err)
		}
		<-wrote
		got, cut := answers(t, out)
		switch {
		case got > want:
			t.Fatalf("%d answers to %d request frames", got, want)
		case got < want && !cut && !reset:
			t.Fatalf("%d answers to %d request frames, and the last answer was complete", got, want)
		}
		// The worker still serves. The check reads a block id of its own,
		// uncached: a fuzz input may legitimately have dropped or
		// re-cached any block it named (the worker trusts the block ids
		// and lengths a client sends; block tokens are issue 13's work).
		checks++
		c2, err := net.Dial("tcp", e.w.DataAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(10 * time.Second))
		_, body := readData(t, c2, &apiv1.ReadBlockRequest{BlockId: meta.BlockID(1<<40+checks, 1), Offset: 5, Length: 100, BlockLength: testBS, BlockSizeBytes: testBS,
			ReadType: apiv1.ReadType_NO_CACHE, Ufs: &apiv1.UfsBlockSource{UfsPath: ufsPath, BlockOffset: testBS, Persisted: true}})
		equal(t, "read after the fuzz input", body, data[testBS+5:testBS+105])
	})
}

// decodable counts the request frames at the start of in that decode.
func decodable(in []byte) int {
	r := bytes.NewReader(in)
	n := 0
	for frame.Read(r, &apiv1.ReadBlockRequest{}) == nil {
		n++
	}
	return n
}

// answers parses a data-port reply stream: headers, each followed by its
// bytes when OK. cut is true when the stream ends inside an answer.
func answers(t *testing.T, out []byte) (n int, cut bool) {
	t.Helper()
	for len(out) > 0 {
		if len(out) < 4 {
			return n, true
		}
		size := binary.BigEndian.Uint32(out)
		if size > frame.MaxSize {
			t.Fatalf("answer %d: header of %d bytes", n, size)
		}
		if len(out) < 4+int(size) {
			return n, true
		}
		var h apiv1.DataFrameHeader
		if err := proto.Unmarshal(out[4:4+size], &h); err != nil {
			t.Fatalf("answer %d: undecodable header: %v", n, err)
		}
		out = out[4+size:]
		switch {
		case h.GetCode() != 0 && (h.GetLength() != 0 || h.GetMessage() == ""):
			t.Fatalf("answer %d: error header %v has a length or no message", n, &h)
		case h.GetLength() < 0:
			t.Fatalf("answer %d: negative length %d", n, h.GetLength())
		case int64(len(out)) < h.GetLength():
			return n, true
		}
		out = out[h.GetLength():]
		n++
	}
	return n, false
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
