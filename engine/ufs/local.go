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
type Local struct{}

var _ UFS = Local{}

var tmpSeq atomic.Int64

// OpenRange implements UFS.
func (Local) OpenRange(_ context.Context, p string, off, length int64) (io.ReadCloser, error) {
	f, err := os.Open(p)
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
	f    *os.File
	tmp  string
	dst  string
	done bool
}

// Create implements UFS: writes a temp file beside dst, fsyncs and renames on Close.
func (Local) Create(_ context.Context, p string, mode uint32) (Writer, error) {
	if mode == 0 {
		mode = 0o644
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, wrapLocal("mkdir", filepath.Dir(p), err)
	}
	// The temporary name does not grow with the real one: a 255-byte name
	// must work (NAME_MAX).
	tmp := filepath.Join(filepath.Dir(p), TempPrefix+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatInt(tmpSeq.Add(1), 36))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(mode&0o7777))
	if err != nil {
		return nil, wrapLocal("create", p, err)
	}
	return &localWriter{f: f, tmp: tmp, dst: p}, nil
}

func (w *localWriter) Write(b []byte) (int, error) { return w.f.Write(b) }

func (w *localWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(w.tmp)
		return fmt.Errorf("fsync %s: %w", w.dst, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("close %s: %w", w.dst, err)
	}
	if err := os.Rename(w.tmp, w.dst); err != nil {
		os.Remove(w.tmp)
		return wrapLocal("rename into", w.dst, err)
	}
	return fsutil.SyncDir(filepath.Dir(w.dst))
}

func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.tmp)
}

func statusOf(fi fs.FileInfo) Status {
	return Status{Name: fi.Name(), Folder: fi.IsDir(), Length: fi.Size(), Mode: uint32(fi.Mode().Perm()), ModTime: fi.ModTime()}
}

// Stat implements UFS.
func (Local) Stat(_ context.Context, p string) (Status, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return Status{}, wrapLocal("stat", p, err)
	}
	return statusOf(fi), nil
}

// List implements UFS; it skips Alcove's own temp files.
func (Local) List(_ context.Context, p string) ([]Status, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, wrapLocal("list", p, err)
	}
	out := make([]Status, 0, len(ents))
	for _, e := range ents {
		if IsTempName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, statusOf(fi))
	}
	return out, nil
}

// Mkdirs implements UFS.
func (Local) Mkdirs(_ context.Context, p string, mode uint32) error {
	if mode == 0 {
		mode = 0o755
	}
	return wrapLocal("mkdir", p, os.MkdirAll(p, fs.FileMode(mode&0o7777)))
}

// Delete implements UFS; deleting something absent succeeds.
func (Local) Delete(_ context.Context, p string, recursive bool) error {
	var err error
	if recursive {
		err = os.RemoveAll(p)
	} else {
		err = os.Remove(p)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return wrapLocal("delete", p, err)
}

// Rename implements UFS.
func (Local) Rename(_ context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return wrapLocal("mkdir", filepath.Dir(dst), err)
	}
	return wrapLocal("rename "+src+" to", dst, os.Rename(src, dst))
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
