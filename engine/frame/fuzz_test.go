package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// seedFrames are real frames of the data port and the domain socket.
func seedFrames(tb testing.TB) [][]byte {
	var out [][]byte
	for _, msgs := range [][]proto.Message{
		{&apiv1.ReadBlockRequest{BlockId: meta.BlockID(21, 0), Length: -1, BlockLength: 1 << 20, BlockSizeBytes: 1 << 20,
			ReadType: apiv1.ReadType_NO_CACHE, Ufs: &apiv1.UfsBlockSource{UfsPath: "/ufs/dp", BlockOffset: 0, Persisted: true}}},
		{&apiv1.ReadBlockRequest{BlockId: meta.BlockID(21, 1), Offset: 777, Length: 10000, BlockLength: 1 << 20}, &apiv1.ReadBlockRequest{}},
		{&apiv1.DataFrameHeader{Length: 1 << 20}},
		{&apiv1.DataFrameHeader{Code: 15, Message: "block 6291456 is not cached on any worker and its file was never persisted"}},
	} {
		var b []byte
		for _, m := range msgs {
			var err error
			if b, err = Append(b, m); err != nil {
				tb.Fatal(err)
			}
		}
		out = append(out, b)
	}
	return out
}

// FuzzRead reads a stream of frames as the data port and the client do.
// Properties: no panic; each frame consumes exactly 4 bytes plus its
// declared length; a body over MaxSize is refused with InvalidArgument
// before it is read; a decoded message framed again reads back equal; and
// garbage ends in an error, never a silent short read.
func FuzzRead(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, false)
	f.Add([]byte{0, 0, 0, 3, 0x08}, true)
	f.Fuzz(func(t *testing.T, data []byte, header bool) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			var m proto.Message = &apiv1.ReadBlockRequest{}
			if header {
				m = &apiv1.DataFrameHeader{}
			}
			err := Read(r, m)
			if err != nil {
				if before >= 4 {
					n := binary.BigEndian.Uint32(data[len(data)-before:])
					if n > MaxSize && !errors.Is(err, meta.ErrInvalidArgument) {
						t.Fatalf("frame of %d bytes: error %v, want InvalidArgument", n, err)
					}
					if n > MaxSize && r.Len() != before-4 {
						t.Fatalf("an oversized frame's body was read")
					}
				}
				if before == 0 && !errors.Is(err, io.EOF) {
					t.Fatalf("clean end of stream: %v, want io.EOF", err)
				}
				return
			}
			n := binary.BigEndian.Uint32(data[len(data)-before:])
			if used := before - r.Len(); used != 4+int(n) {
				t.Fatalf("frame declaring %d bytes consumed %d", n, used)
			}
			again, err := Append(nil, m)
			if err != nil {
				t.Fatalf("re-frame %v: %v", m, err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := Read(bytes.NewReader(again), back); err != nil {
				t.Fatalf("read back %v: %v", m, err)
			}
			if !proto.Equal(m, back) {
				t.Fatalf("round trip: %v became %v", m, back)
			}
		}
	})
}
