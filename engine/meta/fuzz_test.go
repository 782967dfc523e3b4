package meta

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCleanPath checks CleanPath against a reference resolver (a stack of
// names; ".." pops, popping the root is an error) and the invariants the
// rest of Alcove relies on: a clean path is absolute, canonical (cleaning
// it again changes nothing), free of "", ".", ".." names and NUL, with names
// of at most MaxNameLength bytes; it never climbs above the root; and the
// helpers (Components, Parent, Base, Join, HasPrefix, RelPath) agree with it.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b/", "//a//./b", "/a/../b", "/a/b/../..", "", "a/b", "/..", "/a/../../etc",
		"/a\x00b", "/" + strings.Repeat("x", 256), "/volumes/pvc-0f3c/part-00000", "/%2e%2e/x", "/./.../..../", "/a/b/c/../../../..", "\\..\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := CleanPath(p)
		want, wantErr := refClean(p)
		if err != nil {
			if got != "" {
				t.Fatalf("CleanPath(%q) = %q with error %v", p, got, err)
			}
			if !errors.Is(err, ErrInvalidPath) && !errors.Is(err, ErrNameTooLong) {
				t.Fatalf("CleanPath(%q): error %v is neither ErrInvalidPath nor ErrNameTooLong", p, err)
			}
			if !errors.Is(err, wantErr) {
				t.Fatalf("CleanPath(%q): %v, reference says %v", p, err, wantErr)
			}
			return
		}
		if wantErr != nil || got != want {
			t.Fatalf("CleanPath(%q) = %q, reference says %q, %v", p, got, want, wantErr)
		}
		if again, err := CleanPath(got); err != nil || again != got {
			t.Fatalf("CleanPath(%q) = %q, not canonical: again %q, %v", p, got, again, err)
		}
		if got == "/" {
			if Components(got) != nil || Base(got) != "" || Parent(got) != "/" {
				t.Fatalf("root helpers: %v %q %q", Components(got), Base(got), Parent(got))
			}
			return
		}
		names := Components(got)
		if "/"+strings.Join(names, "/") != got {
			t.Fatalf("Components(%q) = %q", got, names)
		}
		for _, n := range names {
			if n == "" || n == "." || n == ".." || len(n) > MaxNameLength || strings.ContainsAny(n, "/\x00") {
				t.Fatalf("CleanPath(%q) = %q has name %q", p, got, n)
			}
		}
		dir, base := Parent(got), Base(got)
		if Join(dir, base) != got || !HasPrefix(got, dir) || RelPath(got, dir) != base || base != names[len(names)-1] {
			t.Fatalf("helpers disagree on %q: parent %q base %q join %q rel %q", got, dir, base, Join(dir, base), RelPath(got, dir))
		}
		if HasPrefix(dir, got) {
			t.Fatalf("HasPrefix(%q, %q): a parent lies under its child", dir, got)
		}
		if sib := got + "x"; HasPrefix(sib, got) {
			t.Fatalf("HasPrefix(%q, %q): a sibling with a longer name lies under it", sib, got)
		}
	})
}

// refClean resolves p with a stack of names, the obvious way.
func refClean(p string) (string, error) {
	if p == "" || p[0] != '/' || strings.ContainsRune(p, 0) {
		return "", ErrInvalidPath
	}
	var stack []string
	for _, n := range strings.Split(p, "/") {
		switch n {
		case "", ".":
		case "..":
			if len(stack) == 0 {
				return "", ErrInvalidPath
			}
			stack = stack[:len(stack)-1]
		default:
			if len(n) > MaxNameLength {
				return "", ErrNameTooLong
			}
			stack = append(stack, n)
		}
	}
	return "/" + strings.Join(stack, "/"), nil
}
