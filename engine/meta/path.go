// Package meta holds the domain types every Alcove component shares: namespace
// paths, block ids, write/read types and the sentinel errors that map to gRPC
// status codes in one place (see ToStatus).
package meta

import (
	"fmt"
	"path"
	"strings"
)

// MaxNameLength is the longest path component accepted, as in POSIX NAME_MAX.
const MaxNameLength = 255

// ValidName checks that name can be one component of a namespace path: not
// empty, not "." or "..", no "/" or NUL (ErrInvalidPath), at most
// MaxNameLength bytes (ErrNameTooLong). The one rule for the master, the
// FUSE layer and the CSI driver.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: name %q must be one path component (not empty, . or ..)", ErrInvalidPath, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: name %q must be one path component (no / or NUL)", ErrInvalidPath, name)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%w: name is %d bytes, longer than %d", ErrNameTooLong, len(name), MaxNameLength)
	}
	return nil
}

// CleanPath validates a namespace path and returns its canonical form:
// absolute, no trailing slash, no "." or ".." components. A ".." that would
// climb above the root is rejected rather than silently clamped, so a caller
// never reaches a different path than it named.
func CleanPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty path", ErrInvalidPath)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: %q is not absolute (start it with /)", ErrInvalidPath, p)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidPath, p)
	}
	depth := 0
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", fmt.Errorf("%w: %q escapes the root (a .. component climbs above /)", ErrInvalidPath, p)
			}
		default:
			if len(c) > MaxNameLength {
				return "", fmt.Errorf("%w: component of %q is %d bytes, longer than %d", ErrNameTooLong, p, len(c), MaxNameLength)
			}
			depth++
		}
	}
	return path.Clean(p), nil
}

// Components splits a clean path into its names; the root has none.
func Components(clean string) []string {
	if clean == "/" {
		return nil
	}
	return strings.Split(clean[1:], "/")
}

// Parent returns the parent of a clean path; the root is its own parent.
func Parent(clean string) string { return path.Dir(clean) }

// Base returns the last component of a clean path ("" for the root).
func Base(clean string) string {
	if clean == "/" {
		return ""
	}
	return path.Base(clean)
}

// Join joins a clean path and a relative name.
func Join(dir string, name ...string) string {
	return path.Join(append([]string{dir}, name...)...)
}

// HasPrefix reports whether p is dir or lies under it (both clean).
func HasPrefix(p, dir string) bool {
	if dir == "/" || p == dir {
		return true
	}
	return strings.HasPrefix(p, dir+"/")
}

// RelPath returns p relative to dir ("" when equal); p must lie under dir.
func RelPath(p, dir string) string {
	if p == dir {
		return ""
	}
	if dir == "/" {
		return p[1:]
	}
	return strings.TrimPrefix(p, dir+"/")
}
