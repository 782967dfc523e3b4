package worker

import (
	"encoding/binary"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
)

// Transport tuning for bulk block streams. Clients should dial with matching
// windows (grpc.WithInitialWindowSize / WithInitialConnWindowSize: the
// receiver's window limits what the sender may have in flight) and
// grpc.WithReadBufferSize/WithWriteBufferSize of 1 MiB.
const (
	windowSize = 64 << 20
	bufferSize = 1 << 20
	maxMsgSize = 2 * maxChunkSize
)

// chunkPool recycles chunk buffers: a chunk is read from the cache file or
// the UFS into a pooled buffer that gRPC returns here once it is written.
var chunkPool = mem.NewTieredBufferPool(64<<10, 1<<20, maxChunkSize)

// rawChunk is a DataChunk whose data gRPC sends without re-marshaling:
// chunkCodec frames it as field 1 and hands the buffer to the transport,
// which frees it to chunkPool after writing. The sender must not touch buf
// after SendMsg.
type rawChunk struct{ buf *[]byte }

// chunkCodec is the proto codec plus zero-copy marshaling of rawChunk.
type chunkCodec struct{ encoding.CodecV2 }

func newChunkCodec() chunkCodec { return chunkCodec{encoding.GetCodecV2(proto.Name)} }

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	var body mem.Buffer
	switch m := v.(type) {
	case *rawChunk:
		body = mem.NewBuffer(m.buf, chunkPool)
	case *mappedChunk:
		body = m.buffer()
	default:
		return c.CodecV2.Marshal(v)
	}
	hdr := make([]byte, 1, 1+binary.MaxVarintLen64)
	hdr[0] = 1<<3 | 2 // DataChunk.data: field 1, length-delimited
	hdr = binary.AppendUvarint(hdr, uint64(body.Len()))
	return mem.BufferSlice{mem.SliceBuffer(hdr), body}, nil
}

// Keepalives on worker streams: a peer that stops answering (SIGSTOP, a
// partition) is detected within about Time + Timeout even while a stream
// waits for data, so neither side holds a lease or a half-written block
// forever. The server allows client pings this often.
var (
	clientKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}
	serverKeepalive = keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}
	keepalivePolicy = keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}
)

func serverOptions(m *metrics) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(serverKeepalive),
		grpc.KeepaliveEnforcementPolicy(keepalivePolicy),
		grpc.ForceServerCodecV2(newChunkCodec()),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.ReadBufferSize(bufferSize),
		grpc.WriteBufferSize(bufferSize),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(m.unaryInterceptor),
		grpc.ChainStreamInterceptor(m.streamInterceptor),
	}
}

// clientDialOptions are the dial options a client should use for bulk
// reads from workers (engine/client mirrors them; used by this package's tests).
func clientDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
		grpc.WithReadBufferSize(bufferSize),
		grpc.WithWriteBufferSize(bufferSize),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	}
}
