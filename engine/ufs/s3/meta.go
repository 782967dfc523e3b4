package s3

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

const (
	fileMode = 0o644
	dirMode  = 0o755
	// copyThreads bounds server-side copies of a directory rename.
	copyThreads = 8
)

func trimETag(e string) string { return strings.Trim(e, `"`) }

// mtime drops sub-second precision: LIST answers carry milliseconds where
// HEAD answers carry seconds, and both must give one fingerprint.
func mtime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Truncate(time.Second)
}

func (f *FS) head(ctx context.Context, k, etag string) (ufs.Status, error) {
	octx, cancel := f.op(ctx)
	defer cancel()
	in := &s3.HeadObjectInput{Bucket: &f.bucket, Key: &k}
	if etag != "" {
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	out, err := f.client.HeadObject(octx, in)
	if err != nil {
		return ufs.Status{}, f.wrap(ctx, "stat", k, err)
	}
	return ufs.Status{Name: path.Base("/" + k), Length: aws.ToInt64(out.ContentLength), Mode: fileMode,
		ModTime: mtime(out.LastModified), Fingerprint: trimETag(aws.ToString(out.ETag))}, nil
}

// Stat implements ufs.UFS: an object is a file; a key prefix with objects
// under it (or its marker) is a directory; "/" is the bucket.
func (f *FS) Stat(ctx context.Context, p string) (ufs.Status, error) {
	k := key(p)
	if k == "" {
		octx, cancel := f.op(ctx)
		defer cancel()
		if _, err := f.client.HeadBucket(octx, &s3.HeadBucketInput{Bucket: &f.bucket}); err != nil {
			err = f.wrap(ctx, "stat bucket", "", err)
			if errors.Is(err, meta.ErrNotFound) {
				return ufs.Status{}, fmt.Errorf("S3 bucket %s at %s does not exist: %w", f.bucket, f.endpoint, meta.ErrNotFound)
			}
			return ufs.Status{}, err
		}
		return ufs.Status{Name: "/", Folder: true, Mode: dirMode}, nil
	}
	st, err := f.head(ctx, k, "")
	if err == nil || !errors.Is(err, meta.ErrNotFound) {
		return st, err
	}
	page, err := f.listPage(ctx, k+"/", "", nil, 1)
	if err != nil {
		return ufs.Status{}, err
	}
	if len(page.Contents) == 0 && len(page.CommonPrefixes) == 0 {
		return ufs.Status{}, fmt.Errorf("S3 stat s3://%s/%s: %w", f.bucket, k, meta.ErrNotFound)
	}
	return ufs.Status{Name: path.Base(p), Folder: true, Mode: dirMode}, nil
}

func (f *FS) listPage(ctx context.Context, prefix, delim string, token *string, maxKeys int32) (*s3.ListObjectsV2Output, error) {
	octx, cancel := f.op(ctx)
	defer cancel()
	in := &s3.ListObjectsV2Input{Bucket: &f.bucket, Prefix: &prefix, ContinuationToken: token}
	if delim != "" {
		in.Delimiter = &delim
	}
	if maxKeys > 0 {
		in.MaxKeys = &maxKeys
	}
	out, err := f.client.ListObjectsV2(octx, in)
	if err != nil {
		return nil, f.wrap(ctx, "list", prefix, err)
	}
	return out, nil
}

// walk lists every object under prefix (delim "": the whole subtree), one
// bounded call per page of up to 1000 keys.
func (f *FS) walk(ctx context.Context, prefix, delim string, fn func(*s3.ListObjectsV2Output) error) error {
	var token *string
	for {
		page, err := f.listPage(ctx, prefix, delim, token, 0)
		if err != nil {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			return nil
		}
		token = page.NextContinuationToken
	}
}

// List implements ufs.UFS with a delimiter listing: common prefixes are
// directories, objects files; the directory's own marker is not a child.
func (f *FS) List(ctx context.Context, p string) ([]ufs.Status, error) {
	prefix := dirPrefix(p)
	var out []ufs.Status
	found := prefix == ""
	err := f.walk(ctx, prefix, "/", func(page *s3.ListObjectsV2Output) error {
		for _, cp := range page.CommonPrefixes {
			found = true
			name := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/")
			if ufs.IsTempName(name) {
				continue
			}
			out = append(out, ufs.Status{Name: name, Folder: true, Mode: dirMode})
		}
		for _, o := range page.Contents {
			found = true
			name := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			if name == "" || strings.HasSuffix(name, "/") || ufs.IsTempName(name) {
				continue // the marker of this directory; Alcove's temporaries
			}
			out = append(out, ufs.Status{Name: name, Length: aws.ToInt64(o.Size), Mode: fileMode,
				ModTime: mtime(o.LastModified), Fingerprint: trimETag(aws.ToString(o.ETag))})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		if prefix == "" {
			return nil, nil
		}
		// An empty listing: a file, or nothing at all.
		st, err := f.Stat(ctx, p)
		if err != nil {
			return nil, err
		}
		if !st.Folder {
			return nil, fmt.Errorf("S3 list s3://%s/%s: %w", f.bucket, key(p), meta.ErrNotDirectory)
		}
	}
	return out, nil
}

// Mkdirs implements ufs.UFS: a marker object keeps the directory visible
// while it is empty (parents are implied by the key).
func (f *FS) Mkdirs(ctx context.Context, p string, _ uint32) error {
	if key(p) == "" {
		return nil
	}
	return f.putMarker(ctx, dirPrefix(p))
}

func (f *FS) putMarker(ctx context.Context, k string) error {
	octx, cancel := f.op(ctx)
	defer cancel()
	_, err := f.client.PutObject(octx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &k, Body: strings.NewReader(""), ContentLength: aws.Int64(0)})
	return f.wrap(ctx, "create directory marker", k, err)
}

// keepParent writes the marker of p's parent, so that removing p's last
// object does not make the directory vanish from S3 (Alcove still has it).
func (f *FS) keepParent(ctx context.Context, p string) error {
	if parent := meta.Parent(p); parent != "/" {
		return f.putMarker(ctx, dirPrefix(parent))
	}
	return nil
}

// Delete implements ufs.UFS; deleting something absent succeeds.
func (f *FS) Delete(ctx context.Context, p string, recursive bool) error {
	k := key(p)
	if k == "" {
		return fmt.Errorf("%w: will not delete the whole bucket %s", meta.ErrInvalidArgument, f.bucket)
	}
	_, err := f.head(ctx, k, "")
	switch {
	case err == nil:
		if err := f.deleteKeys(ctx, []string{k}); err != nil {
			return err
		}
	case !errors.Is(err, meta.ErrNotFound):
		return err
	case recursive:
		var keys []string
		if err := f.walk(ctx, k+"/", "", func(page *s3.ListObjectsV2Output) error {
			for _, o := range page.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
			return nil
		}); err != nil {
			return err
		}
		if err := f.deleteKeys(ctx, keys); err != nil {
			return err
		}
	default:
		page, err := f.listPage(ctx, k+"/", "", nil, 2)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			if aws.ToString(o.Key) != k+"/" {
				return fmt.Errorf("S3 delete s3://%s/%s: %w", f.bucket, k, meta.ErrDirectoryNotEmpty)
			}
		}
		if err := f.deleteKeys(ctx, []string{k + "/"}); err != nil {
			return err
		}
	}
	return f.keepParent(ctx, p)
}

// deleteKeys removes objects in batches of 1000 (one DeleteObjects each).
func (f *FS) deleteKeys(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		batch := keys[:n]
		keys = keys[n:]
		objs := make([]types.ObjectIdentifier, len(batch))
		for i := range batch {
			objs[i] = types.ObjectIdentifier{Key: &batch[i]}
		}
		octx, cancel := f.op(ctx)
		var out *s3.DeleteObjectsOutput
		var err error
		if len(objs) == 1 {
			_, err = f.client.DeleteObject(octx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: objs[0].Key})
		} else {
			out, err = f.client.DeleteObjects(octx, &s3.DeleteObjectsInput{Bucket: &f.bucket, Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)}})
		}
		cancel()
		if err != nil {
			return f.wrap(ctx, "delete", batch[0], err)
		}
		if out != nil && len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("S3 delete s3://%s/%s at %s: %s: %s (%d of %d failed): %w", f.bucket, aws.ToString(e.Key), f.endpoint,
				aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors), len(batch), meta.ErrUFSUnavailable)
		}
	}
	return nil
}

// Rename implements ufs.UFS as server-side copies then deletes. It is not
// atomic: a failure part way leaves copies at dst and src whole.
func (f *FS) Rename(ctx context.Context, src, dst string) error {
	sk, dk := key(src), key(dst)
	if sk == "" || dk == "" {
		return fmt.Errorf("%w: cannot rename the bucket root", meta.ErrInvalidArgument)
	}
	st, err := f.head(ctx, sk, "")
	type obj struct {
		key  string
		size int64
	}
	var objs []obj
	switch {
	case err == nil:
		objs = []obj{{sk, st.Length}}
	case !errors.Is(err, meta.ErrNotFound):
		return err
	default:
		if err := f.walk(ctx, sk+"/", "", func(page *s3.ListObjectsV2Output) error {
			for _, o := range page.Contents {
				objs = append(objs, obj{aws.ToString(o.Key), aws.ToInt64(o.Size)})
			}
			return nil
		}); err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("S3 rename s3://%s/%s: %w", f.bucket, sk, meta.ErrNotFound)
		}
	}
	// Copy everything first: until the deletes, the source is whole.
	sem := make(chan struct{}, copyThreads)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, o := range objs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := f.copyObject(ctx, o.key, dk+strings.TrimPrefix(o.key, sk), o.size)
			if err != nil {
				mu.Lock()
				firstErr = cmpOr(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.key
	}
	if err := f.deleteKeys(ctx, keys); err != nil {
		return err
	}
	return f.keepParent(ctx, src)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// copySource is the URL-encoded bucket/key a copy reads from.
func (f *FS) copySource(k string) string {
	segs := strings.Split(k, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return f.bucket + "/" + strings.Join(segs, "/")
}

// copyObject copies one object server-side; above the single-copy limit
// (5 GiB) it copies in parts.
func (f *FS) copyObject(ctx context.Context, sk, dk string, size int64) error {
	if size <= f.copyMax {
		octx, cancel := f.op(ctx)
		defer cancel()
		_, err := f.client.CopyObject(octx, &s3.CopyObjectInput{Bucket: &f.bucket, Key: &dk, CopySource: aws.String(f.copySource(sk))})
		return f.wrap(ctx, "copy to "+dk+" from", sk, err)
	}
	up, err := f.startUpload(ctx, dk)
	if err != nil {
		return err
	}
	partSize := max(f.copyMax/2, minPartSize, (size+maxParts-1)/maxParts)
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < size; n, off = n+1, off+partSize {
		end := min(off+partSize, size) - 1
		octx, cancel := f.op(ctx)
		out, err := f.client.UploadPartCopy(octx, &s3.UploadPartCopyInput{Bucket: &f.bucket, Key: &dk, UploadId: &up, PartNumber: aws.Int32(n),
			CopySource: aws.String(f.copySource(sk)), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
		cancel()
		if err != nil {
			f.abortUpload(ctx, dk, up)
			return f.wrap(ctx, "copy part to "+dk+" from", sk, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = f.completeUpload(ctx, dk, up, parts)
	return err
}
