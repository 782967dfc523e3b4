// Package ufs is the under-storage interface: what a master needs to load
// metadata and what a worker needs to read through and persist. Backends
// register a URI scheme; "file" (a local directory) is built in.
package ufs

import (
	"context"
	"fmt"
	"io"
	"net/url"
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

// Factory builds a UFS for a root URI with mount properties.
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
// Instances are cached per scheme+host, so a mount's client is reused.
func Resolve(uri string, props map[string]string) (UFS, string, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, "", err
	}
	clean, err := meta.CleanPath(u.Path)
	if err != nil {
		return nil, "", fmt.Errorf("UFS URI %q: %w", uri, err)
	}
	key := u.Scheme + "://" + u.Host
	mu.Lock()
	defer mu.Unlock()
	if fs, ok := instances[key]; ok {
		return fs, clean, nil
	}
	f, ok := factories[u.Scheme]
	if !ok {
		return nil, "", fmt.Errorf("%w: no UFS for scheme %q in %q", meta.ErrInvalidArgument, u.Scheme, uri)
	}
	fs, err := f(u, props)
	if err != nil {
		return nil, "", fmt.Errorf("create UFS for %q: %w", uri, err)
	}
	instances[key] = fs
	return fs, clean, nil
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
