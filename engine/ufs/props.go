package ufs

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
)

// Redacted replaces a secret value wherever one would be shown.
const Redacted = "<redacted>"

// secretWords mark property keys whose values are credentials. One rule
// for every backend: a key naming a secret, a password, a token or an
// access key (s3a.accessKeyId, s3a.secretKey, aws.secretKey, ...).
var secretWords = []string{"secret", "password", "passwd", "token", "accesskey", "credential", "privatekey"}

// IsSecret reports whether a mount property holds a credential.
func IsSecret(key string) bool {
	k := strings.ToLower(strings.NewReplacer(".", "", "-", "", "_", "").Replace(key))
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Redact returns a copy of props with every secret value replaced by
// Redacted (nil stays nil).
func Redact(props map[string]string) map[string]string {
	if props == nil {
		return nil
	}
	out := maps.Clone(props)
	for k := range out {
		if IsSecret(k) {
			out[k] = Redacted
		}
	}
	return out
}

// Secrets returns the secret values of props (for scrubbing text that may
// quote them, such as an error from a third-party library).
func Secrets(props map[string]string) []string {
	var out []string
	for k, v := range props {
		if IsSecret(k) && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Scrub replaces every occurrence of the given secrets in s.
func Scrub(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= 4 { // shorter values would scrub ordinary text
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// MountKeys are mount properties every backend accepts because the master,
// not the store, acts on them.
var MountKeys = []string{conf.UserMetadataSyncInterval}

// CheckKeys refuses properties a backend without options of its own does
// not know (never silently ignored).
func CheckKeys(scheme string, props map[string]string) error {
	for k := range props {
		if !slices.Contains(MountKeys, k) {
			return fmt.Errorf("%w: unknown %s mount option %q (known: %s)", meta.ErrInvalidArgument, scheme, k, strings.Join(MountKeys, ", "))
		}
	}
	return nil
}
