package client

import (
	"encoding/binary"
	"io"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// chunkCodec decodes a DataChunk with one copy, straight out of gRPC's
// receive buffers into the chunk's reused Data slice (the default codec
// materializes the message first, then unmarshals: two copies). Other
// messages use the standard proto codec. It keeps the name "proto" so the
// wire format is unchanged.
type chunkCodec struct{}

func (chunkCodec) Name() string { return proto.Name }

func (chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(proto.Name).Marshal(v)
}

func (chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c, ok := v.(*apiv1.DataChunk)
	if !ok {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	var tag [1]byte
	if n, _ := r.Read(tag[:]); n == 0 {
		c.Data = c.Data[:0]
		return nil
	}
	// Field 1, wire type 2 (bytes), then the varint length, then the payload.
	size, err := binary.ReadUvarint(r)
	if tag[0] != 1<<3|2 || err != nil || int(size) != r.Remaining() {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	if cap(c.Data) < int(size) {
		c.Data = make([]byte, size)
	}
	c.Data = c.Data[:size]
	_, err = io.ReadFull(r, c.Data)
	return err
}
