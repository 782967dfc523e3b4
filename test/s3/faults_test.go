package s3

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/test/miniotest"
)

// clearUnavailable checks that err is a UFS-unavailable error naming the
// endpoint, returned within bound.
func clearUnavailable(t *testing.T, what string, err error, took, bound time.Duration, endpoint string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s succeeded with S3 down", what)
	case !errors.Is(err, meta.ErrUFSUnavailable):
		t.Errorf("%s: %v; want an under-storage-unavailable error", what, err)
	case !strings.Contains(err.Error(), endpoint):
		t.Errorf("%s: %q does not name the endpoint %s", what, err, endpoint)
	case took > bound:
		t.Errorf("%s failed only after %v (bound %v)", what, took, bound)
	default:
		t.Logf("%s failed after %v: %v", what, took.Round(time.Millisecond), err)
	}
}

// TestS3Down: MinIO stops in the middle of a workload. Cached data stays
// readable; uncached reads and THROUGH writes fail clearly in under 30 s;
// ASYNC_THROUGH writes are acknowledged and, once MinIO is back, every
// acknowledged byte reaches the bucket.
func TestS3Down(t *testing.T) {
	e := newEnv(t, nil, nil)
	endpoint := strings.TrimPrefix(e.srv.Endpoint, "http://")
	cached := e.write(e.c, "/data/cached", data(1, 40<<20), apiv1.WriteType_CACHE_THROUGH)
	e.srv.Put(e.bucket, "data/uncached", bytesOf(2, 40<<20))
	// /data was created through Alcove, so its listing is authoritative:
	// an object put behind Alcove's back appears with loadMetadata.
	if _, err := e.c.LoadMetadata(e.ctx, "/data/uncached", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Mkdir(e.ctx, "/load", true, true, 0); err != nil {
		t.Fatal(err)
	}

	// The workload: ASYNC_THROUGH writes and cached reads, throughout.
	var mu sync.Mutex
	acked := map[string]string{}
	var readErrs []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := fmt.Sprintf("/load/f%03d", i)
			if s, err := e.writeErr(p, uint64(100+i), 1<<20+int64(i), apiv1.WriteType_ASYNC_THROUGH); err == nil {
				mu.Lock()
				acked[p] = s
				mu.Unlock()
			}
			if got, err := e.read("/data/cached"); err != nil || got != cached {
				mu.Lock()
				readErrs = append(readErrs, fmt.Errorf("cached read: %q, %v", got, err))
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	e.srv.Stop()
	t.Log("MinIO stopped")

	start := time.Now()
	_, err := e.read("/data/uncached")
	clearUnavailable(t, "uncached read", err, time.Since(start), 30*time.Second, endpoint)
	start = time.Now()
	_, err = e.writeErr("/data/through", 3, 6<<20, apiv1.WriteType_THROUGH)
	clearUnavailable(t, "THROUGH write", err, time.Since(start), 30*time.Second, endpoint)
	start = time.Now()
	_, err = e.c.ListStatus(e.ctx, "/data", false, true)
	clearUnavailable(t, "ls -f", err, time.Since(start), 30*time.Second, endpoint)
	if got := e.mustRead("/data/cached"); got != cached {
		t.Fatal("cached file unreadable with S3 down")
	}
	time.Sleep(2 * time.Second) // ASYNC_THROUGH writes keep being acknowledged meanwhile

	e.srv.Restart()
	t.Log("MinIO restarted")
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, err := range readErrs {
		t.Error(err)
	}
	if len(acked) < 5 {
		t.Fatalf("only %d ASYNC_THROUGH writes acknowledged", len(acked))
	}
	eventually(t, "every acknowledged file persisted after MinIO returned", 90*time.Second, func() error {
		for p := range acked {
			if st := e.stat(p).PersistenceState; st != apiv1.PersistenceState_PERSISTED {
				return notYet("%s is %v", p, st)
			}
		}
		return nil
	})
	for p, s := range acked {
		if got := e.object(strings.TrimPrefix(p, "/")); got != s {
			t.Errorf("%s: the bucket holds %q, want the acknowledged bytes", p, got)
		}
	}
	t.Logf("%d acknowledged ASYNC_THROUGH files all in the bucket", len(acked))
}

// TestS3Slow: an S3 that stops answering (a loopback proxy holding its
// answers back) fails reads, writes and listings within the mount's
// request timeout, naming the endpoint; it never hangs.
func TestS3Slow(t *testing.T) {
	srv := miniotest.Start(t)
	proxy := miniotest.StartProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	props := srv.Props()
	props["alluxio.underfs.s3.endpoint"] = "http://" + proxy.Addr
	props["alluxio.underfs.s3.request.timeout"] = "2s"
	e := newEnv(t, srv, props)
	e.srv.Put(e.bucket, "slow/obj", bytesOf(4, 20<<20))
	e.ls("/slow", false) // the listing is loaded: a create needs no UFS call
	proxy.SetDelay(time.Hour)
	const bound = 20 * time.Second // 2 s per call, a few calls per operation
	start := time.Now()
	_, err := e.read("/slow/obj")
	clearUnavailable(t, "read through a stalled S3", err, time.Since(start), bound, proxy.Addr)
	start = time.Now()
	_, err = e.writeErr("/slow/through", 5, 1<<20, apiv1.WriteType_THROUGH)
	clearUnavailable(t, "THROUGH write to a stalled S3", err, time.Since(start), bound, proxy.Addr)
	start = time.Now()
	_, err = e.c.ListStatus(e.ctx, "/slow", false, true)
	clearUnavailable(t, "ls -f of a stalled S3", err, time.Since(start), bound, proxy.Addr)
	proxy.SetDelay(0)
	if got := e.mustRead("/slow/obj"); got != sum(data(4, 20<<20)) {
		t.Fatal("read after S3 recovered differs")
	}
}
