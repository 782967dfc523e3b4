package csi

import (
	"errors"
	"testing"

	"github.com/alcove-io/alcove/engine/meta"
)

func TestCheckUFS(t *testing.T) {
	for _, tc := range []struct {
		uri     string
		allowed []string
		ok      bool
	}{
		{"s3://bucket/p/x", []string{"s3://bucket/p"}, true},
		{"s3://bucket/p", []string{"s3://bucket/p/"}, true},
		{"s3://bucket/px", []string{"s3://bucket/p"}, false},
		{"s3://other/p", []string{"s3://bucket"}, false},
		{"s3://0", []string{"s3:"}, false}, // found by FuzzParams: "s3:" allowed every bucket
		{"file:///srv/data/set1", []string{"file:///srv/data"}, true},
		{"/srv/data/set1", []string{"file:///srv/data"}, true},
		{"file:///srv/database", []string{"file:///srv/data"}, false},
		{"file:///srv/data/../../etc", []string{"file:///srv/data"}, false},
		{"FILE:///srv/data/x", []string{"file:///srv/data"}, true},
		{"s3://any/x", nil, true},
		{"file:///x", nil, false},
		{"file:///x", []string{"s3://bucket"}, false},
	} {
		err := checkUFS(tc.uri, tc.allowed)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, meta.ErrPermission) && !errors.Is(err, meta.ErrInvalidArgument)) {
			t.Errorf("checkUFS(%q, %q) = %v, want ok=%t", tc.uri, tc.allowed, err, tc.ok)
		}
	}
}
