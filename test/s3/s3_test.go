package s3

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
)

// TestS3Namespace: the root UFS on a MinIO bucket — read-through, every
// write type's visibility in the bucket, renames and deletes of files and
// directories, a mount of a second bucket.
func TestS3Namespace(t *testing.T) {
	e := newEnv(t, nil, nil)

	t.Run("read-through", func(t *testing.T) {
		want := bytesOf(1, 40<<20+5)
		e.srv.Put(e.bucket, "in/put.bin", want)
		fi := e.stat("/in/put.bin")
		if fi.Length != int64(len(want)) || fi.PersistenceState != apiv1.PersistenceState_PERSISTED || fi.UfsFingerprint == "" {
			t.Fatalf("object put behind Alcove's back: %+v", fi)
		}
		if got := e.mustRead("/in/put.bin"); got != sum(bytes.NewReader(want)) {
			t.Fatal("read-through differs from the object")
		}
		// Read once: its blocks are now cached on the local worker.
		eventually(t, "blocks cached after the first read", 10*time.Second, func() error {
			if p := e.stat("/in/put.bin").InAlcovePercentage; p != 100 {
				return notYet("%d%% cached", p)
			}
			return nil
		})
	})

	t.Run("write types", func(t *testing.T) {
		sums := map[apiv1.WriteType]string{}
		key := func(wt apiv1.WriteType) string { return "wt/" + strings.ToLower(wt.String()) }
		for _, wt := range []apiv1.WriteType{apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_THROUGH, apiv1.WriteType_ASYNC_THROUGH, apiv1.WriteType_MUST_CACHE} {
			sums[wt] = e.write(e.c, "/"+key(wt), data(uint64(wt), 20<<20+3), wt)
		}
		// CACHE_THROUGH and THROUGH: in the bucket when Close returns.
		for _, wt := range []apiv1.WriteType{apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_THROUGH} {
			if got := e.object(key(wt)); got != sums[wt] {
				t.Errorf("%v: the bucket has %q, want the written bytes", wt, got)
			}
		}
		// ASYNC_THROUGH: after its persist.
		eventually(t, "ASYNC_THROUGH persisted", 30*time.Second, func() error {
			if st := e.stat("/" + key(apiv1.WriteType_ASYNC_THROUGH)).PersistenceState; st != apiv1.PersistenceState_PERSISTED {
				return notYet("%v", st)
			}
			return nil
		})
		if got := e.object(key(apiv1.WriteType_ASYNC_THROUGH)); got != sums[apiv1.WriteType_ASYNC_THROUGH] {
			t.Errorf("ASYNC_THROUGH after persist: the bucket has %q", got)
		}
		// MUST_CACHE: never (nor any temporary of it).
		for _, k := range e.srv.Keys(e.bucket, "") {
			if strings.Contains(k, "must_cache") {
				t.Errorf("MUST_CACHE file reached the bucket as %s", k)
			}
		}
		for wt, s := range sums {
			if got := e.mustRead("/" + key(wt)); got != s {
				t.Errorf("%v reads back differently", wt)
			}
		}
	})

	t.Run("rename and delete", func(t *testing.T) {
		e.write(e.c, "/mv/a/one", data(10, 1000), apiv1.WriteType_CACHE_THROUGH)
		e.write(e.c, "/mv/a/sub/two", data(11, 3<<20), apiv1.WriteType_CACHE_THROUGH)
		if _, err := e.c.Mkdir(e.ctx, "/mv/a/empty", true, false, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Rename(e.ctx, "/mv/a/one", "/mv/a/uno", false); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Rename(e.ctx, "/mv/a", "/mv/b", false); err != nil {
			t.Fatal(err)
		}
		keys := e.srv.Keys(e.bucket, "mv/")
		for _, k := range []string{"mv/b/uno", "mv/b/sub/two", "mv/b/empty/"} {
			if !slices.Contains(keys, k) {
				t.Errorf("after renames %s is missing from the bucket: %v", k, keys)
			}
		}
		for _, k := range keys {
			if strings.HasPrefix(k, "mv/a/") {
				t.Errorf("after renames %s is still in the bucket", k)
			}
		}
		if got := e.object("mv/b/sub/two"); got != sum(data(11, 3<<20)) {
			t.Error("renamed object differs")
		}
		if err := e.c.Delete(e.ctx, "/mv/b/uno", false, false); err != nil {
			t.Fatal(err)
		}
		if e.object("mv/b/uno") != "" {
			t.Error("deleted file still in the bucket")
		}
		if err := e.c.Delete(e.ctx, "/mv/b", true, false); err != nil {
			t.Fatal(err)
		}
		if keys := e.srv.Keys(e.bucket, "mv/b"); len(keys) != 0 {
			t.Errorf("deleted directory left %v", keys)
		}
		if _, err := e.c.GetStatus(e.ctx, "/mv/b"); !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("deleted directory: %v", err)
		}
	})

	t.Run("renamed multipart objects read cold", func(t *testing.T) {
		// A rename in S3 is a copy: a multipart object's copy may get a new
		// ETag. The master records it, so uncached reads of the moved file
		// are not refused as "changed" and a sync keeps its inode.
		n := int64(40<<20 + 1) // three 16 MiB parts
		want := e.write(e.c, "/mvp/d/big", data(12, n), apiv1.WriteType_CACHE_THROUGH)
		id := e.stat("/mvp/d/big").FileId
		if err := e.c.Rename(e.ctx, "/mvp/d/big", "/mvp/d/big2", false); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Rename(e.ctx, "/mvp/d", "/mvp/e", false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Free(e.ctx, "/mvp/e", true, false); err != nil {
			t.Fatal(err)
		}
		eventually(t, "blocks freed", 10*time.Second, func() error {
			if p := e.stat("/mvp/e/big2").InAlcovePercentage; p != 0 {
				return notYet("%d%% cached", p)
			}
			return nil
		})
		if got, err := e.read("/mvp/e/big2"); err != nil || got != want {
			t.Fatalf("renamed file read cold: %v (same bytes: %v)", err, got == want)
		}
		if fi := e.ls("/mvp/e", true)["big2"]; fi == nil || fi.FileId != id {
			t.Fatalf("ls -f after the renames replaced the file as changed: %+v (id was %d)", fi, id)
		}
	})

	t.Run("names with URI characters", func(t *testing.T) {
		// Namespace names reach S3 as the literal object keys (and back):
		// %, ?, #, spaces, +, and a "%2e%2e" that must stay a name, never
		// "..". Objects put with a plain S3 client are listed and read under
		// their names; files written through Alcove land under theirs.
		names := []string{"100% sure", "what?.txt", "#hash", "with space", "%2e%2e", "a+b", "q?x#y%20z"}
		for i, n := range names {
			e.srv.Put(e.bucket, "odd/"+n, []byte("object "+n))
			e.srv.Put(e.bucket, "odd/dir ?#%/"+strconv.Itoa(i), []byte("nested "+n))
		}
		got := e.ls("/odd", true)
		for _, n := range names {
			if got[n] == nil {
				t.Errorf("ls -f /odd lacks %q (has %v)", n, slices.Collect(maps.Keys(got)))
				continue
			}
			if s, err := e.read("/odd/" + n); err != nil || s != sum(strings.NewReader("object "+n)) {
				t.Errorf("read /odd/%s: %v (same bytes: %v)", n, err, s == sum(strings.NewReader("object "+n)))
			}
		}
		if sub := e.ls("/odd/dir ?#%", true); len(sub) != len(names) {
			t.Errorf("ls -f of a directory named with URI characters: %d entries, want %d", len(sub), len(names))
		}
		for i, n := range names {
			want := e.write(e.c, "/oddw/"+n, data(uint64(20+i), 1000+int64(i)), apiv1.WriteType_CACHE_THROUGH)
			if got := e.object("oddw/" + n); got != want {
				t.Errorf("file %q written through Alcove: the bucket's object %q has %q", n, "oddw/"+n, got)
			}
		}
		if _, err := e.c.Mkdir(e.ctx, "/oddw/dir #2", true, false, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Rename(e.ctx, "/oddw/what?.txt", "/oddw/dir #2/100%", false); err != nil {
			t.Fatal(err)
		}
		if e.object("oddw/dir #2/100%") == "" || e.object("oddw/what?.txt") != "" {
			t.Errorf("rename of names with URI characters: bucket has %v", e.srv.Keys(e.bucket, "oddw/"))
		}
		if err := e.c.Delete(e.ctx, "/oddw/%2e%2e", false, false); err != nil {
			t.Fatal(err)
		}
		if e.object("oddw/%2e%2e") != "" || e.object("oddw/a+b") == "" {
			t.Errorf("delete of %%2e%%2e: bucket has %v", e.srv.Keys(e.bucket, "oddw/"))
		}
		// A mount root naming a prefix with such characters, escaped in the URI.
		other := e.srv.NewBucket()
		e.srv.Put(other, "p #?%/x y", []byte("escaped root"))
		if err := e.c.Mount(e.ctx, "/esc", "s3://"+other+"/"+url.PathEscape("p #?%"), true, false, e.srv.Props()); err != nil {
			t.Fatal(err)
		}
		defer e.c.Unmount(e.ctx, "/esc")
		if got := e.mustRead("/esc/x y"); got != sum(strings.NewReader("escaped root")) {
			t.Error("read under a mount root with escaped characters differs")
		}
	})

	t.Run("mount a second bucket", func(t *testing.T) {
		other := e.srv.NewBucket()
		e.srv.Put(other, "p/x", []byte("second bucket"))
		if err := e.c.Mount(e.ctx, "/s3", "s3://"+other+"/p", true, false, e.srv.Props()); err != nil {
			t.Fatal(err)
		}
		if got := e.mustRead("/s3/x"); got != sum(strings.NewReader("second bucket")) {
			t.Fatal("read through the mount differs")
		}
		if _, err := e.c.Create(e.ctx, "/s3/new", client0()); !errors.Is(err, meta.ErrPermission) {
			t.Fatalf("create under a read-only mount: %v", err)
		}
		mts, err := e.c.MountTable(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mts {
			for k, v := range m.GetProperties() {
				if strings.Contains(v, e.srv.SecretKey) {
					t.Errorf("mount table shows %s of %s in clear", k, m.GetAlcovePath())
				}
			}
		}
		if err := e.c.Unmount(e.ctx, "/s3"); err != nil {
			t.Fatal(err)
		}
		if e.srv.Get(other, "p/x") == nil {
			t.Fatal("unmount touched the bucket")
		}
	})
}

// TestS3Large: a file written through multipart and read back cold, and a
// directory of many objects listed; 1 GiB and 10,000 objects with
// ALCOVE_S3_LARGE=1, 96 MiB and 1,500 otherwise.
func TestS3Large(t *testing.T) {
	e := newEnv(t, nil, nil)
	size, objects := int64(96<<20+17), 1500
	if large {
		size, objects = 1<<30, 10000
	}
	t.Run("multipart", func(t *testing.T) {
		start := time.Now()
		want := e.write(e.c, "/big/file", data(7, size), apiv1.WriteType_CACHE_THROUGH)
		t.Logf("wrote %d MiB CACHE_THROUGH in %v", size>>20, time.Since(start).Round(time.Millisecond))
		head, err := e.srv.Client().HeadObject(e.ctx, &s3.HeadObjectInput{Bucket: &e.bucket, Key: strPtr("big/file")})
		if err != nil {
			t.Fatal(err)
		}
		if etag := *head.ETag; !strings.Contains(etag, "-") || *head.ContentLength != size {
			t.Fatalf("object %s of %d bytes: not a multipart upload of the whole file", etag, *head.ContentLength)
		}
		if got := e.object("big/file"); got != want {
			t.Fatal("the bucket's object differs from the written bytes")
		}
		if _, err := e.c.Free(e.ctx, "/big/file", false, false); err != nil {
			t.Fatal(err)
		}
		eventually(t, "file freed", 10*time.Second, func() error {
			if p := e.stat("/big/file").InAlcovePercentage; p != 0 {
				return notYet("%d%% still cached", p)
			}
			return nil
		})
		start = time.Now()
		if got := e.mustRead("/big/file"); got != want {
			t.Fatal("cold read through Alcove differs")
		}
		t.Logf("read %d MiB cold in %v", size>>20, time.Since(start).Round(time.Millisecond))
	})
	t.Run("listing", func(t *testing.T) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range objects {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				e.srv.Put(e.bucket, fmt.Sprintf("many/obj-%05d", i), []byte{byte(i)})
			}()
		}
		wg.Wait()
		start := time.Now()
		ls := e.ls("/many", false)
		if len(ls) != objects {
			t.Fatalf("listed %d objects, want %d", len(ls), objects)
		}
		t.Logf("listed %d objects in %v", objects, time.Since(start).Round(time.Millisecond))
		if ls[fmt.Sprintf("obj-%05d", objects-1)].GetLength() != 1 {
			t.Fatal("last object missing or wrong")
		}
	})
}

// TestS3MetadataSync: objects added, changed and deleted behind Alcove's
// back appear on ls -f / loadMetadata, or by themselves with a sync
// interval; a changed object reads back its new bytes, never the cached old.
func TestS3MetadataSync(t *testing.T) {
	e := newEnv(t, nil, nil)
	auto := e.srv.NewBucket()
	props := e.srv.Props()
	props["alluxio.user.file.metadata.sync.interval"] = "0"
	if err := e.c.Mount(e.ctx, "/auto", "s3://"+auto+"/", false, false, props); err != nil {
		t.Fatal(err)
	}
	type place struct{ dir, bucket string }
	for _, pl := range []place{{"/sync", e.bucket}, {"/auto", auto}} {
		prefix := strings.TrimPrefix(pl.dir, "/auto")
		key := func(name string) string { return strings.TrimPrefix(prefix+"/"+name, "/") }
		old, changed := bytesOf(20, 5<<20), bytesOf(21, 5<<20) // same length: only the ETag tells
		e.srv.Put(pl.bucket, key("a"), []byte("a"))
		e.srv.Put(pl.bucket, key("b"), old)
		if ls := e.ls(pl.dir, false); len(ls) != 2 {
			t.Fatalf("%s: %v", pl.dir, ls)
		}
		before := e.stat(pl.dir + "/b")
		if e.mustRead(pl.dir+"/b") != sum(bytes.NewReader(old)) {
			t.Fatal("first read differs")
		}
		e.srv.Put(pl.bucket, key("c"), []byte("c"))
		e.srv.Put(pl.bucket, key("b"), changed)
		if err := deleteObject(e, pl.bucket, key("a")); err != nil {
			t.Fatal(err)
		}
		var ls map[string]*apiv1.FileInfo
		if pl.dir == "/sync" {
			if ls = e.ls(pl.dir, false); len(ls) != 2 || ls["c"] != nil {
				t.Fatalf("%s without sync changed: %v", pl.dir, ls)
			}
			ls = e.ls(pl.dir, true) // fs ls -f
		} else {
			ls = e.ls(pl.dir, false) // the mount's interval 0: every access syncs
		}
		if len(ls) != 2 || ls["a"] != nil || ls["c"] == nil || ls["b"] == nil {
			t.Fatalf("%s after sync: %v", pl.dir, ls)
		}
		after := ls["b"]
		if after.FileId == before.FileId || after.UfsFingerprint == before.UfsFingerprint || after.InAlcovePercentage != 0 {
			t.Fatalf("%s/b changed in S3 but kept its inode or cache: before %+v after %+v", pl.dir, before, after)
		}
		if got := e.mustRead(pl.dir + "/b"); got != sum(bytes.NewReader(changed)) {
			t.Fatalf("%s/b reads the stale cached bytes", pl.dir)
		}
	}
	// fs loadMetadata on one file.
	e.srv.Put(e.bucket, "sync/b", []byte("third version"))
	infos, err := e.c.LoadMetadata(e.ctx, "/sync/b", false)
	if err != nil || len(infos) != 1 || infos[0].GetLength() != int64(len("third version")) {
		t.Fatalf("loadMetadata: %v, %v", infos, err)
	}
	if got := e.mustRead("/sync/b"); got != sum(strings.NewReader("third version")) {
		t.Fatal("after loadMetadata the file reads stale bytes")
	}
	// A file changed in S3 while Alcove holds old metadata is refused, not
	// mixed: its blocks carry the ETag Alcove recorded.
	e.write(e.c, "/sync/d", data(30, 40<<20), apiv1.WriteType_THROUGH)
	e.srv.Put(e.bucket, "sync/d", bytesOf(31, 40<<20))
	_, err = e.read("/sync/d")
	if !errors.Is(err, meta.ErrFailedPrecondition) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("read of an object changed behind stale metadata: %v, want a FailedPrecondition naming the change", err)
	}
}

func deleteObject(e *env, bucket, key string) error {
	_, err := e.srv.Client().DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	return err
}

func strPtr(s string) *string { return &s }
