// Package frame is the length-prefixed protobuf framing shared by Alcove's
// non-gRPC wire protocols (the short-circuit domain socket and the worker's
// raw data port): a 4-byte big-endian length, then the marshaled message.
package frame

import (
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/alcove-io/alcove/engine/meta"
)

// MaxSize bounds a frame body; real messages are a few hundred bytes.
const MaxSize = 64 << 10

// Append appends m as one frame to dst.
func Append(dst []byte, m proto.Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst, nil
}

// Write writes m as one frame.
func Write(w io.Writer, m proto.Message) error {
	b, err := Append(nil, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Read reads one frame into m.
func Read(r io.Reader, m proto.Message) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	return ReadBody(r, binary.BigEndian.Uint32(hdr[:]), m)
}

// ReadBody reads a frame body of n bytes (its length already read) into m.
func ReadBody(r io.Reader, n uint32, m proto.Message) error {
	if n > MaxSize {
		return fmt.Errorf("read frame: %w: %d bytes exceed %d", meta.ErrInvalidArgument, n, MaxSize)
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
