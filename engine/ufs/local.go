package ufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alcove-io/alcove/engine/fsutil"
	"github.com/alcove-io/alcove/engine/meta"
)

func init() {
	Register("file", func(root *url.URL, props map[string]string) (UFS, error) {
		if err := CheckKeys("file", props); err != nil {
			return nil, err
		}
		if root.Host != "" {
			return nil, fmt.Errorf("%w: file URI must have no host (file:///dir), got %q", meta.ErrInvalidArgument, root.Host)
		}
		return Local{}, nil
	})
}

// Local is a UFS over the local filesystem; paths are absolute host paths.
//
// Every operation resolves its path one component at a time from a root
// handle of "/" (os.Root, openat), so a path longer than PATH_MAX works:
// a namespace path of PATH_MAX bytes below a mounted directory is longer
// than that on the host. Symbolic links are objects of their own (Lstat,
// Symlink, Readlink); links inside a path are followed.
type Local struct{}

var (
	_ UFS       = Local{}
	_ Symlinker = Local{}
)

var tmpSeq atomic.Int64

// hostRoot is "/" as an os.Root, opened once.
var hostRoot = sync.OnceValues(func() (*os.Root, error) { return os.OpenRoot("/") })

// local resolves an absolute host path to the root handle and the path
// relative to it.
func local(p string) (*os.Root, string, error) {
	r, err := hostRoot()
	if err != nil {
		return nil, "", fmt.Errorf("open / for the local UFS: %w", err)
	}
	rel := strings.TrimLeft(filepath.Clean(p), "/")
	if rel == "" {
		rel = "."
	}
	return r, rel, nil
}

// OpenRange implements UFS.
func (Local) OpenRange(_ context.Context, p string, off, length int64) (io.ReadCloser, error) {
	r, rel, err := local(p)
	if err != nil {
		return nil, err
	}
	f, err := r.Open(rel)
	if err != nil {
		return nil, wrapLocal("open", p, err)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("seek %s: %w", p, err)
		}
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

type localWriter struct {
	r    *os.Root
	f    *os.File
	tmp  string // relative to r
	dst  string // relative to r
	name string // dst as given, for errors
	off  int64  // bytes written or skipped
	done bool
}

var _ Skipper = (*localWriter)(nil)

// Create implements UFS: writes a temp file beside dst, fsyncs and renames on Close.
func (Local) Create(_ context.Context, p string, mode uint32) (Writer, error) {
	if mode == 0 {
		mode = 0o644
	}
	r, rel, err := local(p)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(rel)
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return nil, wrapLocal("mkdir", filepath.Dir(p), err)
	}
	// The temporary name does not grow with the real one: a 255-byte name
	// must work (NAME_MAX).
	tmp := filepath.Join(dir, TempPrefix+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatInt(tmpSeq.Add(1), 36))
	f, err := r.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(mode&0o7777))
	if err != nil {
		return nil, wrapLocal("create", p, err)
	}
	return &localWriter{r: r, f: f, tmp: tmp, dst: rel, name: p}, nil
}

func (w *localWriter) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.off += int64(n)
	return n, err
}

// Skip implements Skipper: a hole in the file.
func (w *localWriter) Skip(n int64) error {
	if _, err := w.f.Seek(n, io.SeekCurrent); err != nil {
		return fmt.Errorf("skip %d bytes of %s: %w", n, w.name, err)
	}
	w.off += n
	return nil
}

func (w *localWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.f.Truncate(w.off); err != nil { // a hole at the end
		w.f.Close()
		w.r.Remove(w.tmp)
		return fmt.Errorf("size %s: %w", w.name, err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		w.r.Remove(w.tmp)
		return fmt.Errorf("fsync %s: %w", w.name, err)
	}
	if err := w.f.Close(); err != nil {
		w.r.Remove(w.tmp)
		return fmt.Errorf("close %s: %w", w.name, err)
	}
	if err := w.r.Rename(w.tmp, w.dst); err != nil {
		w.r.Remove(w.tmp)
		return wrapLocal("rename into", w.name, err)
	}
	return fsutil.SyncDirIn(w.r, filepath.Dir(w.dst))
}

func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return w.r.Remove(w.tmp)
}

// statusOf describes fi; a symbolic link's target is read by readlink.
func statusOf(fi fs.FileInfo, readlink func() (string, error)) Status {
	st := Status{Name: fi.Name(), Folder: fi.IsDir(), Length: fi.Size(), Mode: uint32(fi.Mode().Perm()), ModTime: fi.ModTime()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := readlink(); err == nil && t != "" {
			st.Target = t
		}
	}
	return st
}

// Stat implements UFS; a symbolic link is described, not followed.
func (Local) Stat(_ context.Context, p string) (Status, error) {
	r, rel, err := local(p)
	if err != nil {
		return Status{}, err
	}
	fi, err := r.Lstat(rel)
	if err != nil {
		return Status{}, wrapLocal("stat", p, err)
	}
	return statusOf(fi, func() (string, error) { return r.Readlink(rel) }), nil
}

// List implements UFS; it skips Alcove's own temp files.
func (Local) List(_ context.Context, p string) ([]Status, error) {
	r, rel, err := local(p)
	if err != nil {
		return nil, err
	}
	d, err := r.Open(rel)
	if err != nil {
		return nil, wrapLocal("list", p, err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, wrapLocal("list", p, err)
	}
	out := make([]Status, 0, len(ents))
	for _, e := range ents {
		if IsTempName(e.Name()) {
			continue
		}
		// Lstat through the directory's handle: Info would stat by the
		// joined path, which may exceed PATH_MAX.
		child := filepath.Join(rel, e.Name())
		fi, err := r.Lstat(child)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, statusOf(fi, func() (string, error) { return r.Readlink(child) }))
	}
	return out, nil
}

// Mkdirs implements UFS.
func (Local) Mkdirs(_ context.Context, p string, mode uint32) error {
	if mode == 0 {
		mode = 0o755
	}
	r, rel, err := local(p)
	if err != nil {
		return err
	}
	return wrapLocal("mkdir", p, r.MkdirAll(rel, fs.FileMode(mode&0o7777)))
}

// Delete implements UFS; deleting something absent succeeds. A symbolic
// link is removed, never followed.
func (Local) Delete(_ context.Context, p string, recursive bool) error {
	r, rel, err := local(p)
	if err != nil {
		return err
	}
	if recursive {
		err = r.RemoveAll(rel)
	} else {
		err = r.Remove(rel)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return wrapLocal("delete", p, err)
}

// Rename implements UFS.
func (Local) Rename(_ context.Context, src, dst string) error {
	r, rsrc, err := local(src)
	if err != nil {
		return err
	}
	_, rdst, _ := local(dst)
	if err := r.MkdirAll(filepath.Dir(rdst), 0o755); err != nil {
		return wrapLocal("mkdir", filepath.Dir(dst), err)
	}
	return wrapLocal("rename "+src+" to", dst, r.Rename(rsrc, rdst))
}

// Symlink implements Symlinker: a real symbolic link.
func (Local) Symlink(_ context.Context, p, target string) error {
	r, rel, err := local(p)
	if err != nil {
		return err
	}
	if err := r.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return wrapLocal("mkdir", filepath.Dir(p), err)
	}
	if err := r.Symlink(target, rel); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("UFS symlink %s: %w", p, meta.ErrAlreadyExists)
		}
		return wrapLocal("symlink", p, err)
	}
	return nil
}

// Readlink implements Symlinker.
func (Local) Readlink(_ context.Context, p string) (string, error) {
	r, rel, err := local(p)
	if err != nil {
		return "", err
	}
	t, err := r.Readlink(rel)
	return t, wrapLocal("readlink", p, err)
}

func wrapLocal(verb, p string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("UFS %s %s: %w", verb, p, meta.ErrNotFound)
	}
	return fmt.Errorf("UFS %s %s: %w", verb, p, err)
}
