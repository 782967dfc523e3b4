package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/blockstore"
	"github.com/alcove-io/alcove/engine/meta"
)

// BenchmarkRemoteRead reads a cached 256 MiB file (4 × 64 MiB blocks, MEM
// tier on tmpfs) from a worker over loopback gRPC, and the same bytes as a
// raw TCP loopback stream (pread from the cache file, 1 MiB writes), in the
// same run, and reports both throughputs and their ratio.
//
//	go test -run '^$' -bench RemoteRead -benchtime 4x ./engine/worker
func BenchmarkRemoteRead(b *testing.B) {
	const (
		bs     = 64 << 20
		blocks = 4
		fileID = 1
	)
	dir, err := os.MkdirTemp("/dev/shm", "alcove-bench")
	if err != nil {
		b.Skip("no /dev/shm:", err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	e := newEnv(b, blockstore.TierConfig{Alias: "MEM", Dir: dir, QuotaBytes: 2 * blocks * bs})
	data := randBytes(1, blocks*bs)
	if _, err := e.write(context.Background(), &apiv1.WriteFileHeader{FileId: fileID, BlockSizeBytes: bs, WriteType: apiv1.WriteType_MUST_CACHE}, data); err != nil {
		b.Fatal(err)
	}
	data = nil
	rawAddr := startRawServer(b, e.w.store, fileID, blocks)

	readAll := func(opts ...grpc.CallOption) {
		for i := range int64(blocks) {
			s, err := e.client.ReadBlock(context.Background(), &apiv1.ReadBlockRequest{BlockId: meta.BlockID(fileID, i), Length: -1, BlockToken: fileToken(fileID)}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			var n int64
			reused := new(apiv1.DataChunk)
			for {
				c := reused
				if len(opts) == 0 {
					c = new(apiv1.DataChunk)
				}
				err := s.RecvMsg(c)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n += int64(len(c.GetData()))
			}
			if n != bs {
				b.Fatalf("read %d bytes of block %d", n, i)
			}
		}
	}
	var grpcDur, oneCopyDur, rawDur time.Duration
	total := int64(blocks * bs)
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		readAll()
		grpcDur += time.Since(start)

		start = time.Now()
		readAll(grpc.ForceCodecV2(oneCopyCodec{}))
		oneCopyDur += time.Since(start)

		start = time.Now()
		conn, err := net.Dial("tcp", rawAddr)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{conn}, buf)
		conn.Close()
		if err != nil || n != total {
			b.Fatalf("raw stream: %d bytes, %v", n, err)
		}
		rawDur += time.Since(start)
	}
	b.StopTimer()
	gbps := func(d time.Duration) float64 { return float64(total) * float64(b.N) / d.Seconds() / 1e9 }
	b.ReportMetric(gbps(grpcDur), "grpc-GB/s")
	b.ReportMetric(gbps(oneCopyDur), "grpc1copy-GB/s")
	b.ReportMetric(gbps(rawDur), "tcp-GB/s")
	b.ReportMetric(gbps(grpcDur)/gbps(rawDur), "ratio")
	b.ReportMetric(gbps(oneCopyDur)/gbps(rawDur), "ratio1copy")
}

// oneCopyCodec is a client codec that decodes a DataChunk by copying its
// payload once out of gRPC's receive buffers (the default proto codec
// copies twice: materialize, then unmarshal). engine/client can do the same.
type oneCopyCodec struct{}

func (oneCopyCodec) Name() string { return "proto" }

func (oneCopyCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(proto.Name).Marshal(v)
}

func (oneCopyCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c, ok := v.(*apiv1.DataChunk)
	if !ok {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	var hdr [1 + binary.MaxVarintLen64]byte
	n, _ := r.Read(hdr[:1])
	if n == 0 { // empty message
		c.Data = c.Data[:0]
		return nil
	}
	if hdr[0] != 1<<3|2 {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	size, err := binary.ReadUvarint(r)
	if err != nil || int(size) != r.Remaining() {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	if cap(c.Data) < int(size) {
		c.Data = make([]byte, size)
	}
	c.Data = c.Data[:size]
	_, err = io.ReadFull(r, c.Data)
	return err
}

// startRawServer streams the file's cached blocks over plain TCP to every
// connection: pread from the cache file into a 1 MiB buffer, then write.
func startRawServer(b *testing.B, store *blockstore.Store, fileID int64, blocks int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		buf := make([]byte, 1<<20)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			for i := range int64(blocks) {
				h, err := store.OpenBlock(meta.BlockID(fileID, i))
				if err != nil {
					panic(err)
				}
				for off := int64(0); off < h.Length; off += int64(len(buf)) {
					n, _ := h.File.ReadAt(buf[:min(int64(len(buf)), h.Length-off)], h.Offset+off)
					if _, err := c.Write(buf[:n]); err != nil {
						break
					}
				}
				h.Close()
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
