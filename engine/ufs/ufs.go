// Package ufs is the under-storage interface: what a master needs to load
// metadata and what a worker needs to read through and persist. Backends
// register a URI scheme; "file" (a local directory) is built in and "s3"
// lives in engine/ufs/s3 (imported for its registration).
//
// A UFS instance is built per mount: its URI root (scheme://host) plus its
// properties, so two mounts of one bucket with different credentials never
// share a client. Properties may hold secrets (IsSecret says which): they
// reach the master and the workers only, and every text that leaves them
// (logs, errors, listings, metrics, web pages) uses Redact.
package ufs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alcove-io/alcove/engine/meta"
)

// TempPrefix starts the names of Alcove's temporary UFS objects (writes in
// progress, persists waiting for the master to move them into place).
// Listings never show them.
const TempPrefix = ".alcove-tmp"

// IsTempName reports whether a UFS object name is one of Alcove's temporaries.
func IsTempName(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// Status describes one UFS object.
type Status struct {
	Name    string
	Folder  bool
	Length  int64
	Mode    uint32
	ModTime time.Time
	// Fingerprint identifies the object's content when the store has such
	// an identity (S3: the ETag); "" otherwise. A changed fingerprint means
	// changed bytes even when length and mtime look the same.
	Fingerprint string
	// Target is a symbolic link's target ("" for other objects; only a
	// Symlinker reports links).
	Target string
}

// Symlinker is a UFS that stores symbolic links (the local UFS: real
// links; an object store: a marker object). Alcove keeps links in its own
// namespace either way; only a Symlinker gets them persisted.
type Symlinker interface {
	// Symlink creates a link at path to target (parents created).
	Symlink(ctx context.Context, path, target string) error
	// Readlink returns the target of the link at path.
	Readlink(ctx context.Context, path string) (string, error)
}

// Writer is an object being created. Close commits it atomically (readers
// never see a partial object); Abort discards it.
type Writer interface {
	io.Writer
	Close() error
	Abort() error
}

// Skipper is a Writer that can leave a run of zeros unwritten (a sparse
// region; the local UFS seeks over it).
type Skipper interface {
	Skip(n int64) error
}

// zeros is the source of the zeros Skip writes to a Writer that cannot skip.
var zeros [1 << 20]byte

// Skip appends n zero bytes to w: as a sparse region when w is a
// Skipper, else written out.
func Skip(w io.Writer, n int64) error {
	if n <= 0 {
		return nil
	}
	if s, ok := w.(Skipper); ok {
		return s.Skip(n)
	}
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// UFS is one under storage, addressed by paths within it ("/a/b").
type UFS interface {
	// OpenRange reads length bytes from off (length < 0: to the end).
	OpenRange(ctx context.Context, path string, off, length int64) (io.ReadCloser, error)
	Create(ctx context.Context, path string, mode uint32) (Writer, error)
	Stat(ctx context.Context, path string) (Status, error)
	List(ctx context.Context, path string) ([]Status, error)
	Mkdirs(ctx context.Context, path string, mode uint32) error
	Delete(ctx context.Context, path string, recursive bool) error
	Rename(ctx context.Context, src, dst string) error
}

// MatchingOpener is implemented by stores that can refuse a read when the
// object's fingerprint changed (S3: If-Match on the ETag), so bytes of a
// new version are never mixed into blocks of the old one.
type MatchingOpener interface {
	OpenRangeMatching(ctx context.Context, path string, off, length int64, fingerprint string) (io.ReadCloser, error)
}

// OpenRangeMatching reads like OpenRange and, when fingerprint is set and
// fs can check it, fails with meta.ErrFailedPrecondition if the object
// changed since its fingerprint was recorded.
func OpenRangeMatching(ctx context.Context, fs UFS, path string, off, length int64, fingerprint string) (io.ReadCloser, error) {
	if mo, ok := fs.(MatchingOpener); ok && fingerprint != "" {
		return mo.OpenRangeMatching(ctx, path, off, length, fingerprint)
	}
	return fs.OpenRange(ctx, path, off, length)
}

// Factory builds a UFS for a root URI (scheme://host/) with mount properties.
type Factory func(root *url.URL, props map[string]string) (UFS, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
	instances = map[string]UFS{}
)

// Register adds a backend for a URI scheme.
func Register(scheme string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	factories[scheme] = f
}

// ParseURI parses a UFS URI; a bare absolute path means file://.
func ParseURI(uri string) (*url.URL, error) {
	if strings.HasPrefix(uri, "/") {
		uri = "file://" + uri
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: UFS URI %q: %v", meta.ErrInvalidArgument, uri, err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("%w: UFS URI %q has no scheme (use file:///dir or s3://bucket/prefix)", meta.ErrInvalidArgument, uri)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: UFS URI %s://%s...: credentials do not belong in the URI (give them as mount options)", meta.ErrInvalidArgument, u.Scheme, u.Host)
	}
	if u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || strings.Contains(uri, "#") { // "#" alone: an empty fragment
		// A UFS path is scheme://host/path: a query or fragment would
		// silently cut every path joined under it short.
		return nil, fmt.Errorf("%w: UFS URI %q: use scheme://host/path without ? or # (escape them in names as %%3F and %%23)", meta.ErrInvalidArgument, uri)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// Resolve returns the UFS serving uri and the path of uri within it.
// Instances are cached per URI root and properties (one per mount
// configuration), so a mount's client is reused and two mounts with
// different credentials never share one.
func Resolve(uri string, props map[string]string) (UFS, string, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, "", err
	}
	clean, err := meta.CleanPath(u.Path)
	if err != nil {
		return nil, "", fmt.Errorf("UFS URI %q: %w", uri, err)
	}
	key := instanceKey(u.Scheme, u.Host, props)
	mu.Lock()
	defer mu.Unlock()
	if fs, ok := instances[key]; ok {
		return fs, clean, nil
	}
	f, ok := factories[u.Scheme]
	if !ok {
		return nil, "", fmt.Errorf("%w: no UFS for scheme %q in %q (known: %s)", meta.ErrInvalidArgument, u.Scheme, uri, strings.Join(slices.Sorted(maps.Keys(factories)), ", "))
	}
	fs, err := f(&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}, props)
	if err != nil {
		return nil, "", fmt.Errorf("create UFS for %q: %w", uri, err)
	}
	instances[key] = fs
	return fs, clean, nil
}

// instanceKey identifies a mount configuration without keeping secrets in
// clear in the map's keys.
func instanceKey(scheme, host string, props map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(props[k]), props[k])
	}
	return scheme + "://" + host + "#" + hex.EncodeToString(h.Sum(nil))
}

// JoinURI appends a relative namespace path to a UFS root URI. Each name
// is escaped, so that it reaches the UFS literally once the URI is parsed:
// a name "%2e%2e" stays a name and never becomes "..", and "%", "?" or "#"
// in a name neither fail the parse nor cut the path short.
func JoinURI(root, rel string) string {
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return root
	}
	names := strings.Split(rel, "/")
	for i, n := range names {
		names[i] = url.PathEscape(n)
	}
	return strings.TrimRight(root, "/") + "/" + strings.Join(names, "/")
}

// Within reports whether uri lies at or under root (same scheme and host,
// path prefix by whole components).
func Within(uri, root string) bool {
	u, err1 := ParseURI(uri)
	r, err2 := ParseURI(root)
	if err1 != nil || err2 != nil || u.Scheme != r.Scheme || u.Host != r.Host {
		return false
	}
	up, err1 := meta.CleanPath(u.Path)
	rp, err2 := meta.CleanPath(r.Path)
	return err1 == nil && err2 == nil && meta.HasPrefix(up, rp)
}
