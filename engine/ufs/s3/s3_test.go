package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
	"github.com/alcove-io/alcove/test/miniotest"
)

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newFS returns a UFS over a new bucket of srv; extra options override.
func newFS(t *testing.T, srv *miniotest.Server, extra map[string]string) (*FS, string) {
	t.Helper()
	bucket := srv.NewBucket()
	props := srv.Props()
	for k, v := range extra {
		props[k] = v
	}
	f, err := New(bucket, props)
	if err != nil {
		t.Fatal(err)
	}
	return f, bucket
}

func write(t *testing.T, f ufs.UFS, p string, data []byte) {
	t.Helper()
	w, err := f.Create(context.Background(), p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for b := data; len(b) > 0; {
		n := min(len(b), 1<<20+7) // odd chunks cross part boundaries
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// read reads a range twice, through Read and through WriteTo (how the
// worker loads a block into its cache), and checks both got the same bytes.
func read(t *testing.T, f ufs.UFS, p string, off, n int64) []byte {
	t.Helper()
	var got [2][]byte
	for i, copyTo := range []func(io.Reader) ([]byte, error){
		io.ReadAll,
		func(r io.Reader) ([]byte, error) {
			var b bytes.Buffer
			_, err := io.Copy(&b, r) // the reader's WriteTo, as io.CopyBuffer into a block
			return b.Bytes(), err
		},
	} {
		r, err := f.OpenRange(context.Background(), p, off, n)
		if err != nil {
			t.Fatal(err)
		}
		got[i], err = copyTo(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Fatalf("read %s [%d, +%d): Read gave %d bytes, WriteTo %d different ones", p, off, n, len(got[0]), len(got[1]))
	}
	return got[0]
}

func names(sts []ufs.Status) []string {
	var out []string
	for _, s := range sts {
		n := s.Name
		if s.Folder {
			n += "/"
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestS3(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	// Small parts so a few MiB exercise multipart uploads and parallel reads.
	f, bucket := newFS(t, srv, map[string]string{KeyPartSize: "5MB", KeyReadPartSize: "1MB", KeyReadThreads: "4"})

	t.Run("write and read", func(t *testing.T) {
		for _, n := range []int{0, 100, 5 << 20, 12<<20 + 3} {
			p := fmt.Sprintf("/rw/f%d", n)
			data := randBytes(t, n)
			write(t, f, p, data)
			if got := srv.Get(bucket, p[1:]); !bytes.Equal(got, data) {
				t.Fatalf("%s in the bucket: %d bytes, want %d", p, len(got), n)
			}
			if got := read(t, f, p, 0, -1); !bytes.Equal(got, data) {
				t.Fatalf("%s read whole: %d bytes, want %d", p, len(got), n)
			}
			if n > 10 {
				off, l := int64(n/3), int64(n/2)
				if got := read(t, f, p, off, l); !bytes.Equal(got, data[off:off+l]) {
					t.Fatalf("%s range [%d,+%d) differs", p, off, l)
				}
			}
			st, err := f.Stat(ctx, p)
			if err != nil || st.Folder || st.Length != int64(n) || st.Fingerprint == "" || st.ModTime.IsZero() {
				t.Fatalf("Stat %s = %+v, %v", p, st, err)
			}
		}
		// Alcove's temporaries never show in listings.
		write(t, f, "/rw/"+ufs.TempPrefix+"-persist-1", []byte("tmp"))
		// List and Stat agree on every fingerprint (sync compares them).
		ls, err := f.List(ctx, "/rw")
		if err != nil || len(ls) != 4 {
			t.Fatalf("List /rw = %v, %v", names(ls), err)
		}
		for _, e := range ls {
			st, _ := f.Stat(ctx, "/rw/"+e.Name)
			if st.Fingerprint != e.Fingerprint || !st.ModTime.Equal(e.ModTime) || st.Length != e.Length {
				t.Fatalf("List %+v vs Stat %+v", e, st)
			}
		}
	})

	t.Run("abort leaves nothing", func(t *testing.T) {
		for _, n := range []int{10, 11 << 20} {
			w, err := f.Create(ctx, "/ab/x", 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(randBytes(t, n)); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			if keys := srv.Keys(bucket, "ab/"); len(keys) != 0 {
				t.Fatalf("aborted write left %v", keys)
			}
		}
	})

	t.Run("directories", func(t *testing.T) {
		if err := f.Mkdirs(ctx, "/d/empty", 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, f, "/d/a", []byte("a"))
		write(t, f, "/d/sub/b", []byte("b"))
		if ls, err := f.List(ctx, "/d"); err != nil || !slices.Equal(names(ls), []string{"a", "empty/", "sub/"}) {
			t.Fatalf("List /d = %v, %v", names(ls), err)
		}
		if ls, err := f.List(ctx, "/d/empty"); err != nil || len(ls) != 0 {
			t.Fatalf("List of an empty directory = %v, %v", names(ls), err)
		}
		if st, err := f.Stat(ctx, "/d/empty"); err != nil || !st.Folder {
			t.Fatalf("Stat of an empty directory = %+v, %v", st, err)
		}
		if st, err := f.Stat(ctx, "/"); err != nil || !st.Folder {
			t.Fatalf("Stat / = %+v, %v", st, err)
		}
		for _, p := range []string{"/nope", "/d/nope", "/d/a/below"} {
			if _, err := f.Stat(ctx, p); !errors.Is(err, meta.ErrNotFound) {
				t.Fatalf("Stat %s = %v, want ErrNotFound", p, err)
			}
		}
		if _, err := f.List(ctx, "/nope"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("List of nothing = %v", err)
		}
		if _, err := f.List(ctx, "/d/a"); !errors.Is(err, meta.ErrNotDirectory) {
			t.Fatalf("List of a file = %v", err)
		}
		if err := f.Delete(ctx, "/d/sub", false); !errors.Is(err, meta.ErrDirectoryNotEmpty) {
			t.Fatalf("non-recursive delete of a full directory = %v", err)
		}
		// Deleting the last object keeps its directory (marker).
		if err := f.Delete(ctx, "/d/sub/b", false); err != nil {
			t.Fatal(err)
		}
		if st, err := f.Stat(ctx, "/d/sub"); err != nil || !st.Folder {
			t.Fatalf("directory vanished with its last object: %+v, %v", st, err)
		}
		if err := f.Delete(ctx, "/d/sub", false); err != nil {
			t.Fatal(err)
		}
		if err := f.Delete(ctx, "/d", true); err != nil {
			t.Fatal(err)
		}
		if keys := srv.Keys(bucket, "d"); len(keys) != 0 {
			t.Fatalf("recursive delete left %v", keys)
		}
		if err := f.Delete(ctx, "/d", true); err != nil {
			t.Fatalf("deleting something absent: %v", err)
		}
	})

	t.Run("rename", func(t *testing.T) {
		big := randBytes(t, 6<<20+1)
		write(t, f, "/mv/src/big", big)
		write(t, f, "/mv/src/in/small", []byte("small"))
		if err := f.Mkdirs(ctx, "/mv/src/empty", 0); err != nil {
			t.Fatal(err)
		}
		old := f.copyMax
		f.copyMax = 5 << 20 // copy the big object in parts
		defer func() { f.copyMax = old }()
		if err := f.Rename(ctx, "/mv/src", "/mv/dst"); err != nil {
			t.Fatal(err)
		}
		if got := srv.Get(bucket, "mv/dst/big"); !bytes.Equal(got, big) {
			t.Fatalf("renamed big object: %d bytes", len(got))
		}
		if got := string(srv.Get(bucket, "mv/dst/in/small")); got != "small" {
			t.Fatalf("renamed small object: %q", got)
		}
		if keys := srv.Keys(bucket, "mv/src/"); len(keys) != 0 {
			t.Fatalf("rename left %v", keys)
		}
		if st, err := f.Stat(ctx, "/mv/dst/empty"); err != nil || !st.Folder {
			t.Fatalf("empty directory after rename: %+v, %v", st, err)
		}
		if err := f.Rename(ctx, "/mv/dst/in/small", "/mv/x y+z"); err != nil {
			t.Fatal(err)
		}
		if got := string(srv.Get(bucket, "mv/x y+z")); got != "small" {
			t.Fatalf("renamed to a name with a space and a plus: %q", got)
		}
		if err := f.Rename(ctx, "/mv/nothing", "/mv/y"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("rename of nothing = %v", err)
		}
	})

	t.Run("listing pages", func(t *testing.T) {
		const n = 2100 // three pages of 1000
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				write(t, f, fmt.Sprintf("/many/o%05d", i), nil)
			}()
		}
		wg.Wait()
		ls, err := f.List(ctx, "/many")
		if err != nil || len(ls) != n {
			t.Fatalf("List /many: %d entries, %v", len(ls), err)
		}
		if err := f.Delete(ctx, "/many", true); err != nil {
			t.Fatal(err)
		}
		if keys := srv.Keys(bucket, "many/"); len(keys) != 0 {
			t.Fatalf("bulk delete left %d keys", len(keys))
		}
	})

	t.Run("changed object", func(t *testing.T) {
		write(t, f, "/ch", randBytes(t, 3<<20))
		st, _ := f.Stat(ctx, "/ch")
		srv.Put(bucket, "ch", randBytes(t, 3<<20))
		r, err := f.OpenRangeMatching(ctx, "/ch", 0, 3<<20, st.Fingerprint)
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if !errors.Is(err, meta.ErrFailedPrecondition) || !strings.Contains(err.Error(), "changed") {
			t.Fatalf("read of a changed object = %v, want ErrFailedPrecondition", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		wrong := srv.Props()
		wrong[KeySecretKey] = "alcove-wrong-secret-1234"
		bad, err := New(bucket, wrong)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Stat(ctx, "/rw/f100")
		if !errors.Is(err, meta.ErrPermission) || strings.Contains(err.Error(), "alcove-wrong-secret") {
			t.Fatalf("wrong secret = %v, want ErrPermission without the secret", err)
		}
		missing, _ := New("no-such-bucket", srv.Props())
		if _, err := missing.Stat(ctx, "/"); !errors.Is(err, meta.ErrNotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Fatalf("missing bucket = %v", err)
		}
	})
}

// TestS3VirtualHost addresses the bucket as bucket.localhost (MinIO runs
// with MINIO_DOMAIN=localhost); the dialer sends those names to loopback,
// as DNS would in a real deployment.
func TestS3VirtualHost(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket()
	props := srv.Props()
	delete(props, KeyPathStyle)
	props[KeyEndpoint] = strings.Replace(srv.Endpoint, "127.0.0.1", "localhost", 1)
	o, err := ParseOptions(props)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	hosts := map[string]bool{}
	o.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		hosts[addr] = true
		mu.Unlock()
		_, port, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
	}
	f, err := NewWithOptions(bucket, o)
	if err != nil {
		t.Fatal(err)
	}
	write(t, f, "/v/x", []byte("virtual"))
	if got := read(t, f, "/v/x", 0, -1); string(got) != "virtual" {
		t.Fatalf("read %q", got)
	}
	if ls, err := f.List(context.Background(), "/v"); err != nil || len(ls) != 1 {
		t.Fatalf("List = %v, %v", ls, err)
	}
	want := fmt.Sprintf("%s.localhost:%d", bucket, srv.Port)
	if !hosts[want] || len(hosts) != 1 {
		t.Fatalf("dialed %v, want only %s", hosts, want)
	}
}

// TestS3TLS reaches MinIO over https with a CA given as a file, and fails
// clearly without it.
func TestS3TLS(t *testing.T) {
	srv, ca := miniotest.StartTLS(t)
	bucket := srv.NewBucket()
	props := srv.Props()
	props[KeyCAFile] = ca
	f, err := New(bucket, props)
	if err != nil {
		t.Fatal(err)
	}
	write(t, f, "/tls", []byte("secure"))
	if got := read(t, f, "/tls", 0, -1); string(got) != "secure" {
		t.Fatalf("read %q", got)
	}
	delete(props, KeyCAFile)
	untrusted, err := New(bucket, props)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.Stat(context.Background(), "/tls"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("https without the CA = %v, want a certificate error", err)
	}
}

// TestS3Timeouts: a store that answers slowly or not at all fails calls in
// bounded time with Unavailable naming the endpoint, never a hang.
func TestS3Timeouts(t *testing.T) {
	srv := miniotest.Start(t)
	proxy := miniotest.StartProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	props := srv.Props()
	props[KeyEndpoint] = "http://" + proxy.Addr
	props[KeyTimeout] = "1s"
	props[KeyReadPartSize] = "1MB"
	bucket := srv.NewBucket()
	f, err := New(bucket, props)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := randBytes(t, 4<<20)
	write(t, f, "/f", data)
	if got := read(t, f, "/f", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("read through the proxy differs")
	}
	proxy.SetDelay(time.Hour)
	for name, call := range map[string]func() error{
		"stat": func() error { _, err := f.Stat(ctx, "/f"); return err },
		"list": func() error { _, err := f.List(ctx, "/"); return err },
		"read": func() error {
			r, err := f.OpenRange(ctx, "/f", 0, 4<<20)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		},
		"write": func() error {
			w, err := f.Create(ctx, "/g", 0)
			if err != nil {
				return err
			}
			w.Write(data)
			return w.Close()
		},
	} {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, meta.ErrUFSUnavailable) || !strings.Contains(err.Error(), proxy.Addr) || took > 5*time.Second {
			t.Errorf("%s against a stalled S3: %v after %v; want Unavailable naming %s within 5 s", name, err, took, proxy.Addr)
		}
		t.Logf("%s: failed after %v: %v", name, took.Round(time.Millisecond), err)
	}
	// A store that is down fails fast too.
	proxy.SetDelay(0)
	srv.Stop()
	start := time.Now()
	if _, err := f.Stat(ctx, "/f"); !errors.Is(err, meta.ErrUFSUnavailable) || time.Since(start) > 15*time.Second {
		t.Errorf("stat with S3 down: %v after %v", err, time.Since(start))
	}
}

func TestParseOptions(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "envkey")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	for _, tc := range []struct {
		name  string
		props map[string]string
		check func(Options) bool
		fail  bool
	}{
		{"environment", nil, func(o Options) bool {
			return o.AccessKey == "envkey" && o.SecretKey == "envsecret" && o.Region == "eu-west-1" && !o.PathStyle && o.Endpoint == ""
		}, false},
		{"properties win", map[string]string{KeyAccessKey: "k", KeySecretKey: "s", KeyRegion: "r", KeyPathStyle: "true", KeyEndpoint: "http://h:9000"},
			func(o Options) bool {
				return o.AccessKey == "k" && o.SecretKey == "s" && o.Region == "r" && o.PathStyle && o.Endpoint == "http://h:9000"
			}, false},
		{"endpoint without scheme", map[string]string{KeyEndpoint: "h:9000"}, func(o Options) bool { return o.Endpoint == "https://h:9000" }, false},
		{"plain http", map[string]string{KeyEndpoint: "h:9000", KeySecureHTTP: "false"}, func(o Options) bool { return o.Endpoint == "http://h:9000" }, false},
		{"Alluxio 1.x keys", map[string]string{"aws.accessKeyId": "a", "aws.secretKey": "b", "alluxio.underfs.s3.endpoint.region": "x"},
			func(o Options) bool { return o.AccessKey == "a" && o.SecretKey == "b" && o.Region == "x" }, false},
		{"tuning", map[string]string{KeyTimeout: "3s", KeyPartSize: "32MB", KeyUploadThreads: "2", KeyReadThreads: "16", KeyMaxRetry: "2"},
			func(o Options) bool {
				return o.Timeout == 3*time.Second && o.PartSize == 32<<20 && o.UploadThreads == 2 && o.ReadThreads == 16 && o.MaxAttempts == 2
			}, false},
		{"sync interval is the master's", map[string]string{"alluxio.user.file.metadata.sync.interval": "10s"}, func(Options) bool { return true }, false},
		{"unknown key", map[string]string{"alluxio.underfs.s3.nope": "1"}, nil, true},
		{"half credentials", map[string]string{KeyAccessKey: "k"}, nil, true},
		{"bad endpoint", map[string]string{KeyEndpoint: "ftp://h"}, nil, true},
		{"bad bool", map[string]string{KeyPathStyle: "yes please"}, nil, true},
		{"part too small", map[string]string{KeyPartSize: "1MB"}, nil, true},
		{"bad timeout", map[string]string{KeyTimeout: "soon"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOptions(tc.props)
			switch {
			case tc.fail && !errors.Is(err, meta.ErrInvalidArgument):
				t.Fatalf("ParseOptions = %v, want ErrInvalidArgument", err)
			case !tc.fail && (err != nil || !tc.check(o)):
				t.Fatalf("ParseOptions = %+v, %v", o, err)
			}
		})
	}
}
