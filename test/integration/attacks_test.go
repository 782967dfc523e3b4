package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/frame"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// The attacks of issue 13, each run against a real `alcove local` (TLS on,
// the default) by a caller holding only a client certificate of the
// cluster, and each refused. The attacker is a tenant: it may read its own
// files, and tries to read, overwrite or destroy someone else's.

type attacker struct {
	t      *testing.T
	c      *cluster
	tls    *security.Source
	master *grpc.ClientConn
}

func newAttacker(t *testing.T, c *cluster, role security.Role) *attacker {
	t.Helper()
	src, err := security.Load(filepath.Join(c.dir, "tls", string(role)))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("passthrough:///"+c.master, security.DialOption(src, security.RoleMaster))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &attacker{t: t, c: c, tls: src, master: cc}
}

func (a *attacker) status(path string) *apiv1.FileInfo {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := apiv1.NewFileSystemMasterClient(a.master).GetStatus(ctx, &apiv1.GetStatusRequest{Path: path})
	if err != nil {
		a.t.Fatalf("get status %s: %v", path, err)
	}
	return r.GetFileInfo()
}

func (a *attacker) worker() *apiv1.WorkerInfo {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := apiv1.NewMetaMasterClient(a.master).GetWorkers(ctx, &apiv1.GetWorkersRequest{})
	if err != nil || len(r.GetWorkers()) == 0 {
		a.t.Fatalf("get workers: %v %v", r, err)
	}
	return r.GetWorkers()[0]
}

func (a *attacker) workerClient(addr string) apiv1.BlockWorkerClient {
	a.t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, security.DialOption(a.tls, security.RoleWorker))
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { cc.Close() })
	return apiv1.NewBlockWorkerClient(cc)
}

// readBlock runs a ReadBlock and returns the bytes and the final status code.
func readBlock(wc apiv1.BlockWorkerClient, req *apiv1.ReadBlockRequest) ([]byte, codes.Code) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := wc.ReadBlock(ctx, req)
	if err != nil {
		return nil, status.Code(err)
	}
	var out []byte
	for {
		ch, err := st.Recv()
		if err != nil {
			if strings.Contains(err.Error(), "EOF") {
				return out, codes.OK
			}
			return out, status.Code(err)
		}
		out = append(out, ch.GetData()...)
	}
}

func TestAttacksRefused(t *testing.T) {
	c := newCluster(t)
	secret := bytes.Repeat([]byte("victim's data "), 1000)
	src := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(src, secret, 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", src, "/victim")
	c.mustRun("fs", "copyFromLocal", "--write-type", "CACHE_THROUGH", src, "/mine")
	a := newAttacker(t, c, security.RoleClient)
	victim, mine := a.status("/victim"), a.status("/mine")
	if len(victim.GetBlockToken()) == 0 || len(mine.GetBlockToken()) == 0 {
		t.Fatalf("a reader of world-readable files got no block tokens (modes %#o, %#o)", victim.GetMode(), mine.GetMode())
	}
	w := a.worker()
	wc := a.workerClient(w.GetAddress())
	victimBlock := victim.GetFileBlockInfos()[0].GetBlockInfo().GetBlockId()
	ctx := context.Background()

	t.Run("fake worker RPCs from a client certificate", func(t *testing.T) {
		bm := apiv1.NewBlockMasterClient(a.master)
		_, err := bm.PersistDone(ctx, &apiv1.PersistDoneRequest{FileId: victim.GetFileId()})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("PersistDone from a client: %v, want PermissionDenied", err)
		}
		_, err = bm.RegisterWorker(ctx, &apiv1.RegisterWorkerRequest{Address: "127.0.0.1:1", Node: "evil"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("RegisterWorker from a client: %v, want PermissionDenied", err)
		}
		_, err = bm.CommitBlock(ctx, &apiv1.CommitBlockRequest{BlockId: victimBlock})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("CommitBlock from a client: %v, want PermissionDenied", err)
		}
		if got := a.status("/victim").GetPersistenceState(); got == apiv1.PersistenceState_PERSISTED {
			t.Fatal("the victim's file is marked persisted")
		}
	})

	t.Run("connection without a certificate", func(t *testing.T) {
		cc, err := grpc.NewClient("passthrough:///"+c.master, security.DialOption(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := apiv1.NewFileSystemMasterClient(cc).GetStatus(tctx, &apiv1.GetStatusRequest{Path: "/victim"}); err == nil {
			t.Fatal("a plaintext client read metadata")
		}
		if _, code := readBlock(apiv1.NewBlockWorkerClient(cc), &apiv1.ReadBlockRequest{BlockId: victimBlock, Length: -1}); code == codes.OK {
			t.Fatal("plaintext connection accepted")
		}
		// A certificate from a CA of its own is no better.
		foreign := t.TempDir()
		if err := security.EnsureLocal(foreign, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		fsrc, err := security.Load(filepath.Join(foreign, "admin"))
		if err != nil {
			t.Fatal(err)
		}
		fc, _ := grpc.NewClient("passthrough:///"+c.master, security.DialOption(fsrc))
		defer fc.Close()
		if _, err := apiv1.NewFileSystemMasterClient(fc).GetStatus(tctx, &apiv1.GetStatusRequest{Path: "/victim"}); err == nil {
			t.Fatal("a certificate of a foreign CA was accepted")
		}
	})

	t.Run("foreign file:// in ReadBlock", func(t *testing.T) {
		// The attacker's own file's token, with the UFS path swapped for a
		// host file outside every mount.
		id := meta.BlockID(mine.GetFileId(), 5) // not cached: a read-through
		req := &apiv1.ReadBlockRequest{BlockId: id, Length: -1, BlockLength: 100, BlockSizeBytes: mine.GetBlockSizeBytes(),
			Ufs:        &apiv1.UfsBlockSource{UfsPath: "file:///etc/passwd", BlockOffset: 5 * mine.GetBlockSizeBytes(), MountId: mine.GetMountId(), Persisted: true},
			BlockToken: mine.GetBlockToken()}
		if data, code := readBlock(wc, req); code != codes.PermissionDenied || len(data) > 0 {
			t.Fatalf("ReadBlock of /etc/passwd: %d bytes, code %v, want PermissionDenied", len(data), code)
		}
		req.Ufs.UfsPath, req.BlockToken = "/etc/passwd", nil
		if _, code := readBlock(wc, req); code != codes.Unauthenticated {
			t.Fatalf("ReadBlock without a token: %v, want Unauthenticated", code)
		}
		// The same over the raw data port.
		raw, err := net.Dial("tcp", w.GetDataAddress())
		if err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, a.tls.ClientConfig(security.RoleWorker))
		defer conn.Close()
		req.BlockToken = mine.GetBlockToken()
		if err := frame.Write(conn, req); err != nil {
			t.Fatal(err)
		}
		var hdr apiv1.DataFrameHeader
		if err := frame.Read(conn, &hdr); err != nil || codes.Code(hdr.GetCode()) != codes.PermissionDenied {
			t.Fatalf("data port ReadBlock of /etc/passwd: %v %v, want PermissionDenied", hdr.String(), err)
		}
		// And the victim's cached block with the attacker's token.
		if data, code := readBlock(wc, &apiv1.ReadBlockRequest{BlockId: victimBlock, Length: -1, BlockToken: mine.GetBlockToken()}); code != codes.PermissionDenied || len(data) > 0 {
			t.Fatalf("ReadBlock of another file's block: %d bytes, %v", len(data), code)
		}
	})

	t.Run("WriteFile over another file's block", func(t *testing.T) {
		st, err := wc.WriteFile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hdr := &apiv1.WriteFileHeader{FileId: victim.GetFileId(), Path: "/victim", BlockSizeBytes: victim.GetBlockSizeBytes(),
			WriteType: apiv1.WriteType_MUST_CACHE, MountId: victim.GetMountId(), UfsPath: victim.GetUfsPath(), BlockToken: mine.GetBlockToken()}
		st.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Header{Header: hdr}})
		st.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Data{Data: []byte("attacker's bytes")}})
		if _, err := st.CloseAndRecv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("WriteFile with the victim's id: %v, want PermissionDenied", err)
		}
		// A read token of the victim (any reader has one) does not write either.
		st, _ = wc.WriteFile(ctx)
		hdr.BlockToken = victim.GetBlockToken()
		st.Send(&apiv1.WriteFileRequest{Value: &apiv1.WriteFileRequest_Header{Header: hdr}})
		if _, err := st.CloseAndRecv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("WriteFile with a read token: %v, want PermissionDenied", err)
		}
		if got := c.mustRun("fs", "cat", "/victim"); got != string(secret) {
			t.Fatalf("the victim reads %d other bytes", len(got))
		}
	})

	t.Run("domain-socket OPEN without a valid token", func(t *testing.T) {
		fi, err := os.Stat(w.GetDomainSocket())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Fatalf("domain socket mode %v is open to others", fi.Mode().Perm())
		}
		sc, err := shortcircuit.Dial(ctx, w.GetDomainSocket())
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		for _, tc := range []struct {
			name string
			tok  []byte
			want error
		}{
			{"no token", nil, meta.ErrUnauthenticated},
			{"another file's token", mine.GetBlockToken(), meta.ErrPermission},
			{"forged token", bytes.Repeat([]byte{1}, security.TokenLen), meta.ErrUnauthenticated},
		} {
			if b, err := sc.Open(ctx, victimBlock, victim.GetBlockSizeBytes(), false, tc.tok); !errors.Is(err, tc.want) {
				if b != nil {
					b.Close()
				}
				t.Fatalf("%s: OPEN of the victim's block: %v, want %v", tc.name, err, tc.want)
			}
		}
		b, err := sc.Open(ctx, victimBlock, victim.GetBlockSizeBytes(), false, victim.GetBlockToken())
		if err != nil {
			t.Fatalf("OPEN with the file's own token: %v", err)
		}
		b.Close()
	})

	t.Run("a file the caller may not read gets no token", func(t *testing.T) {
		c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", src, "/private")
		admin := newAttacker(t, c, security.RoleAdmin)
		mode := uint32(0o600)
		if _, err := apiv1.NewFileSystemMasterClient(admin.master).SetAttribute(ctx, &apiv1.SetAttributeRequest{Path: "/private", Mode: &mode}); err != nil {
			t.Fatal(err)
		}
		priv := a.status("/private")
		if len(priv.GetBlockToken()) != 0 {
			t.Fatalf("user %q got a read token of a mode %#o file owned by %q", "local-client", priv.GetMode(), priv.GetOwner())
		}
		id := priv.GetFileBlockInfos()[0].GetBlockInfo().GetBlockId()
		if data, code := readBlock(wc, &apiv1.ReadBlockRequest{BlockId: id, Length: -1}); code != codes.Unauthenticated || len(data) > 0 {
			t.Fatalf("ReadBlock of a private file: %d bytes, %v", len(data), code)
		}
	})

	t.Run("Mount of a disallowed URI by a non-admin", func(t *testing.T) {
		fm := apiv1.NewFileSystemMasterClient(a.master)
		_, err := fm.Mount(ctx, &apiv1.MountRequest{AlcovePath: "/etc", UfsUri: "file:///etc"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Mount by a client: %v, want PermissionDenied", err)
		}
		out, err := c.runEnv([]string{"ALCOVE_TLS_DIR=" + filepath.Join(c.dir, "tls", "client")}, "fs", "mount", "/etc", "file:///etc")
		if err == nil || !strings.Contains(out, "permission denied") {
			t.Fatalf("alcove fs mount as a client: %v %s", err, out)
		}
	})
}
