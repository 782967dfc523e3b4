package meta

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
	}{
		{"a", nil},
		{strings.Repeat("x", MaxNameLength), nil},
		{"..a", nil},
		{"", ErrInvalidPath},
		{".", ErrInvalidPath},
		{"..", ErrInvalidPath},
		{"a/b", ErrInvalidPath},
		{"a\x00", ErrInvalidPath},
		{strings.Repeat("x", MaxNameLength+1), ErrNameTooLong},
	} {
		err := ValidName(tc.name)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("ValidName(%.20q) = %v, want %v", tc.name, err, tc.want)
		}
	}
}
