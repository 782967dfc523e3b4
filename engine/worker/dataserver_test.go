package worker

import (
	"errors"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/meta"
)

// readData sends one request on a data-port connection and returns the
// header and the bytes that follow it.
func readData(t *testing.T, c net.Conn, req *apiv1.ReadBlockRequest) (*apiv1.DataFrameHeader, []byte) {
	t.Helper()
	if req.BlockToken == nil {
		req.BlockToken = readToken(req)
	}
	if err := frame.Write(c, req); err != nil {
		t.Fatal(err)
	}
	var hdr apiv1.DataFrameHeader
	if err := frame.Read(c, &hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, hdr.GetLength())
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("read %d data bytes: %v", hdr.GetLength(), err)
	}
	return &hdr, body
}

func TestDataPort(t *testing.T) {
	e := newEnv(t)
	data := randBytes(11, 2*testBS+4321)
	ufsPath := e.ufsFile("dp", data)
	// Block 0 cached through a full read-through; block 2 left uncached.
	e.readFile(21, ufsPath, true, int64(len(data)), apiv1.ReadType_CACHE)
	c, err := net.Dial("tcp", e.w.DataAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name     string
		idx, off int64
		length   int64
		ufs      bool
	}{
		{"cached whole block", 0, 0, -1, false},
		{"cached range", 1, 777, 10000, false},
		{"uncached tail from the UFS", 2, 100, -1, true},
		{"empty range at the end", 0, testBS, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blen := meta.BlockLength(int64(len(data)), testBS, tc.idx)
			id := meta.BlockID(21, tc.idx)
			if tc.ufs {
				e.w.store.Remove(id)
			}
			hdr, got := readData(t, c, &apiv1.ReadBlockRequest{BlockId: id, Offset: tc.off, Length: tc.length, BlockLength: blen, BlockSizeBytes: testBS,
				ReadType: apiv1.ReadType_NO_CACHE, Ufs: &apiv1.UfsBlockSource{UfsPath: ufsPath, BlockOffset: tc.idx * testBS, Persisted: true}})
			if hdr.GetCode() != 0 {
				t.Fatalf("header %v", hdr)
			}
			end := blen
			if tc.length >= 0 {
				end = tc.off + tc.length
			}
			equal(t, tc.name, got, data[tc.idx*testBS+tc.off:tc.idx*testBS+end])
		})
	}
	// An error is a header with the code; the connection stays usable.
	var hdr apiv1.DataFrameHeader
	if err := frame.Write(c, &apiv1.ReadBlockRequest{BlockId: meta.BlockID(99, 0), Length: -1, BlockLength: 10, BlockSizeBytes: testBS,
		Ufs: &apiv1.UfsBlockSource{UfsPath: "/nowhere"}, BlockToken: fileToken(99)}); err != nil {
		t.Fatal(err)
	}
	if err := frame.Read(c, &hdr); err != nil {
		t.Fatal(err)
	}
	if codes.Code(hdr.GetCode()) != codes.DataLoss || !errors.Is(meta.FromStatus(status.Error(codes.Code(hdr.GetCode()), hdr.GetMessage())), meta.ErrDataLost) {
		t.Fatalf("lost block: header %v, want DataLoss", &hdr)
	}
	_, got := readData(t, c, &apiv1.ReadBlockRequest{BlockId: meta.BlockID(21, 0), Length: 100, BlockLength: testBS, BlockSizeBytes: testBS})
	equal(t, "after an error", got, data[:100])
}
