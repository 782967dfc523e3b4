package ufs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alcove-io/alcove/engine/meta"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, root, err := Resolve("file://"+dir, nil)
	if err != nil || root != dir {
		t.Fatalf("Resolve = %v, %q, %v", fs, root, err)
	}
	p := filepath.Join(dir, "a", "f")
	w, err := fs.Create(ctx, p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an uncommitted file is visible")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := fs.Stat(ctx, p)
	if err != nil || st.Length != 11 || st.Mode != 0o600 || st.Folder {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	r, err := fs.OpenRange(ctx, p, 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "wor" {
		t.Fatalf("OpenRange = %q", b)
	}
	w2, err := fs.Create(ctx, filepath.Join(dir, "a", "g"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w2.Abort()
	ls, err := fs.List(ctx, filepath.Join(dir, "a"))
	if err != nil || len(ls) != 1 || ls[0].Name != "f" {
		t.Fatalf("List = %+v, %v (aborted or temp files must not show)", ls, err)
	}
	if err := fs.Rename(ctx, p, filepath.Join(dir, "b", "f")); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(ctx, p); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("Stat after rename = %v, want ErrNotFound", err)
	}
	if err := fs.Delete(ctx, filepath.Join(dir, "b"), true); err != nil {
		t.Fatal(err)
	}
	if err := fs.Delete(ctx, filepath.Join(dir, "b"), true); err != nil {
		t.Fatalf("deleting something absent: %v", err)
	}
}

func TestResolveErrors(t *testing.T) {
	for _, uri := range []string{"nosuch://x/y", "relative/path", "file://host/x", "file:///a/../../b"} {
		if _, _, err := Resolve(uri, nil); err == nil {
			t.Errorf("Resolve(%q) succeeded", uri)
		}
	}
}

// TestLocalLongName: a NAME_MAX (255-byte) name works; the temporary name a
// write goes through must not be built from it.
func TestLocalLongName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	name := strings.Repeat("n", meta.MaxNameLength)
	p := filepath.Join(dir, name)
	w, err := Local{}.Create(ctx, p, 0o644)
	if err != nil {
		t.Fatalf("create a %d-byte name: %v", len(name), err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("commit a %d-byte name: %v", len(name), err)
	}
	sts, err := Local{}.List(ctx, dir)
	if err != nil || len(sts) != 1 || sts[0].Name != name {
		t.Fatalf("list: %v %v", sts, err)
	}
}

// TestLocalLongPath: a path longer than PATH_MAX (a namespace path of
// PATH_MAX bytes below a mounted directory) works for every operation.
func TestLocalLongPath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := dir
	for range 17 {
		p = filepath.Join(p, strings.Repeat("d", 250))
	}
	if len(p) <= 4096 {
		t.Fatalf("path of %d bytes is not longer than PATH_MAX", len(p))
	}
	l := Local{}
	if err := l.Mkdirs(ctx, p, 0o755); err != nil {
		t.Fatalf("mkdirs: %v", err)
	}
	f := filepath.Join(p, "f")
	w, err := l.Create(ctx, f, 0o644)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := w.Write([]byte("deep")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if st, err := l.Stat(ctx, f); err != nil || st.Length != 4 {
		t.Fatalf("stat: %+v %v", st, err)
	}
	r, err := l.OpenRange(ctx, f, 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "eep" {
		t.Fatalf("read %q: %v", b, err)
	}
	if sts, err := l.List(ctx, p); err != nil || len(sts) != 1 || sts[0].Name != "f" {
		t.Fatalf("list: %v %v", sts, err)
	}
	if err := l.Rename(ctx, f, filepath.Join(p, "g")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := l.Delete(ctx, filepath.Join(dir, strings.Repeat("d", 250)), true); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestLocalSymlink: links are created, listed and stated as links (never
// followed), renamed and deleted as links.
func TestLocalSymlink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := Local{}
	if err := os.WriteFile(filepath.Join(dir, "t"), []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "sub", "l")
	if err := l.Symlink(ctx, link, "../t"); err != nil {
		t.Fatal(err)
	}
	if err := l.Symlink(ctx, link, "x"); !errors.Is(err, meta.ErrAlreadyExists) {
		t.Fatalf("symlink over an existing link: %v", err)
	}
	if tgt, err := l.Readlink(ctx, link); err != nil || tgt != "../t" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	st, err := l.Stat(ctx, link)
	if err != nil || st.Target != "../t" || st.Folder {
		t.Fatalf("stat: %+v %v", st, err)
	}
	sts, err := l.List(ctx, filepath.Join(dir, "sub"))
	if err != nil || len(sts) != 1 || sts[0].Target != "../t" {
		t.Fatalf("list: %+v %v", sts, err)
	}
	if err := l.Rename(ctx, link, filepath.Join(dir, "l2")); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, filepath.Join(dir, "l2"), true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "t")); err != nil || string(b) != "target" {
		t.Fatalf("deleting the link touched its target: %q %v", b, err)
	}
}
