// Package shortcircuit is the worker's unix domain socket protocol: a local
// client asks for a cached block and receives the open cache file's fd
// (SCM_RIGHTS) with the block's offset and length, then reads it directly.
//
// Frames are a 4-byte big-endian length followed by a marshaled
// apiv1.ShortCircuitRequest or apiv1.ShortCircuitResponse. The server answers
// every request, in order; a successful OPEN response carries the fd. A block
// opened on a connection stays leased (never evicted or moved) until the
// client sends CLOSE for it or the connection ends.
package shortcircuit

import (
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/alcove-io/alcove/engine/meta"
)

// maxFrame bounds a frame body; real messages are a few dozen bytes.
const maxFrame = 64 << 10

func appendFrame(dst []byte, m proto.Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst, nil
}

func readFrame(r io.Reader, m proto.Message) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	return readBody(r, binary.BigEndian.Uint32(hdr[:]), m)
}

func readBody(r io.Reader, n uint32, m proto.Message) error {
	if n > maxFrame {
		return fmt.Errorf("read frame: %w: %d bytes exceed %d", meta.ErrInvalidArgument, n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("read frame body: %w", err)
	}
	if err := proto.Unmarshal(body, m); err != nil {
		return fmt.Errorf("unmarshal %T: %w", m, err)
	}
	return nil
}
