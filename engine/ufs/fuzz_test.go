package ufs

import (
	"path"
	"testing"

	"github.com/alcove-io/alcove/engine/meta"
)

// FuzzJoinURI: the UFS path of a namespace path under a mount never leaves
// the mount's UFS root. For any root URI and any clean namespace path, the
// joined URI parses, keeps the root's scheme and host, gains no query or
// fragment, and its clean path is exactly the root's path joined with the
// namespace path's names — the names reach the UFS literally.
func FuzzJoinURI(f *testing.F) {
	for _, s := range [][2]string{
		{"file:///data", "/a/b.txt"},
		{"/var/alcove/underFSStorage", "/dir/part-00000"},
		{"s3://bucket/prefix", "/x/y"},
		{"s3://bucket", "/k"},
		{"file:///data/", "/%2e%2e/%2e%2e/etc/passwd"},
		{"file:///data", "/a%b/q?x/h#x"},
		{"s3://bucket/prefix", "/%2E%2e/other-prefix/key"},
		{"file:///d%20x", "/with space/%25"},
		{"file:///data?x", "/a"},
		{"s3://bucket/p#frag", "/a"},
		{"file:data", "/a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, root, p string) {
		r, err := ParseURI(root)
		if err != nil {
			return // not a mountable root
		}
		if r.Opaque != "" || r.RawQuery != "" || r.ForceQuery || r.Fragment != "" {
			t.Fatalf("ParseURI(%q) accepted a query, fragment or opaque URI", root)
		}
		rootPath, err := meta.CleanPath(r.Path)
		if err != nil {
			return
		}
		clean, err := meta.CleanPath(p)
		if err != nil {
			return
		}
		uri := JoinURI(root, meta.RelPath(clean, "/"))
		u, err := ParseURI(uri)
		if err != nil {
			t.Fatalf("JoinURI(%q, %q) = %q does not parse: %v", root, clean, uri, err)
		}
		if u.Scheme != r.Scheme || u.Host != r.Host || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("JoinURI(%q, %q) = %q: scheme %q host %q query %q fragment %q", root, clean, uri, u.Scheme, u.Host, u.RawQuery, u.Fragment)
		}
		got, err := meta.CleanPath(u.Path)
		if err != nil {
			t.Fatalf("JoinURI(%q, %q) = %q: path %q: %v", root, clean, uri, u.Path, err)
		}
		if want := path.Join(rootPath, clean); got != want {
			t.Fatalf("JoinURI(%q, %q) = %q reaches %q, want %q", root, clean, uri, got, want)
		}
		if !meta.HasPrefix(got, rootPath) {
			t.Fatalf("JoinURI(%q, %q) = %q escapes the root %q", root, clean, uri, rootPath)
		}
	})
}
