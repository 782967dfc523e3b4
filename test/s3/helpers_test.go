// Package s3 tests Alcove over a real MinIO (the seeds' S3) on loopback:
// mounts, read-through, write types, renames and deletes, multipart, large
// listings, metadata sync, faults and timeouts. ALCOVE_S3_LARGE=1 (make
// test-s3-large) runs the 1 GiB file and the 10,000-object listing; make
// test runs smaller versions.
package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/test/alcovetest"
	"github.com/alcove-io/alcove/test/miniotest"
)

// large selects the acceptance sizes (1 GiB file, 10,000 objects).
var large = os.Getenv("ALCOVE_S3_LARGE") == "1"

// env is a MinIO, a bucket mounted at / and a client on node n1.
type env struct {
	t      *testing.T
	srv    *miniotest.Server
	bucket string
	cl     *alcovetest.Cluster
	c      *client.Client
	ctx    context.Context
}

func newEnv(t *testing.T, srv *miniotest.Server, props map[string]string) *env {
	t.Helper()
	if srv == nil {
		srv = miniotest.Start(t)
	}
	if props == nil {
		props = srv.Props()
	}
	bucket := srv.NewBucket()
	cl := alcovetest.StartWith(t, alcovetest.Options{RootUFS: "s3://" + bucket + "/", RootUFSProperties: props, TierBytes: 2 << 30}, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return &env{t: t, srv: srv, bucket: bucket, cl: cl, c: newClient(t, cl.MasterAddr), ctx: ctx}
}

func newClient(t *testing.T, master string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{MasterAddresses: []string{master}, Node: "n1", WriteType: apiv1.WriteType_CACHE_THROUGH,
		BlockSize: 16 << 20, RetryTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// data is a reproducible stream of n pseudo-random bytes.
func data(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(seedOf(seed)), n)
}

func seedOf(s uint64) (k [32]byte) {
	for i := range 8 {
		k[i] = byte(s >> (8 * i))
	}
	return k
}

func sum(r io.Reader) string {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 4<<20)); err != nil {
		panic(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func bytesOf(seed uint64, n int64) []byte {
	b, _ := io.ReadAll(data(seed, n))
	return b
}

// write writes a file through Alcove and returns its sha256.
func (e *env) write(c *client.Client, p string, r io.Reader, wt apiv1.WriteType) string {
	e.t.Helper()
	w, err := c.Create(e.ctx, p, client.WriteOptions{WriteType: wt, Recursive: true})
	if err != nil {
		e.t.Fatalf("create %s: %v", p, err)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(w, h), r, make([]byte, 4<<20)); err != nil {
		e.t.Fatalf("write %s: %v", p, err)
	}
	if err := w.Close(); err != nil {
		e.t.Fatalf("close %s (%v): %v", p, wt, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// read reads a file through Alcove and returns its sha256.
func (e *env) read(p string) (string, error) {
	r, err := e.c.OpenFile(e.ctx, p, apiv1.ReadType_CACHE)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := r.WriteTo(h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (e *env) mustRead(p string) string {
	e.t.Helper()
	s, err := e.read(p)
	if err != nil {
		e.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

// object returns the sha256 of an object in the bucket ("" if absent).
func (e *env) object(key string) string {
	e.t.Helper()
	out, err := e.srv.Client().GetObject(e.ctx, &s3.GetObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		if strings.Contains(err.Error(), "NoSuchKey") {
			return ""
		}
		e.t.Fatalf("get s3://%s/%s: %v", e.bucket, key, err)
	}
	defer out.Body.Close()
	return sum(out.Body)
}

func (e *env) stat(p string) *apiv1.FileInfo {
	e.t.Helper()
	fi, err := e.c.GetStatus(e.ctx, p)
	if err != nil {
		e.t.Fatalf("stat %s: %v", p, err)
	}
	return fi
}

func (e *env) ls(p string, sync bool) map[string]*apiv1.FileInfo {
	e.t.Helper()
	fis, err := e.c.ListStatus(e.ctx, p, false, sync)
	if err != nil {
		e.t.Fatalf("ls %s: %v", p, err)
	}
	out := map[string]*apiv1.FileInfo{}
	for _, fi := range fis {
		out[fi.GetName()] = fi
	}
	return out
}

func eventually(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotYet}, args...)...)
}

func client0() client.WriteOptions { return client.WriteOptions{WriteType: apiv1.WriteType_THROUGH} }

// writeErr writes n bytes of seed's stream and returns their sha256 or the
// error Close (or Create) returned.
func (e *env) writeErr(p string, seed uint64, n int64, wt apiv1.WriteType) (string, error) {
	w, err := e.c.Create(e.ctx, p, client.WriteOptions{WriteType: wt, Recursive: true})
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), data(seed, n)); err != nil {
		w.Close()
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
