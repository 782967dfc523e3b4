package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command builds its flag set and prints help without panicking.
func TestEveryCommandHelp(t *testing.T) {
	var walk func(*cobra.Command)
	var paths [][]string
	walk = func(c *cobra.Command) {
		path := strings.Fields(c.CommandPath())[1:]
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&globals{}))
	if len(paths) < 30 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		root := newRoot(&globals{})
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(append([]string{}, p...), "--help"))
		if err := root.Execute(); err != nil {
			t.Errorf("alcove %v --help: %v", p, err)
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("alcove %v --help printed no usage:\n%s", p, out.String())
		}
	}
}

func TestMasterAddresses(t *testing.T) {
	t.Setenv("ALCOVE_MASTER", "")
	for _, tc := range []struct {
		flag, env string
		want      string
	}{
		{"", "", "127.0.0.1:19998"},
		{"", "m1:1,m2", "m1:1,m2:19998"},
		{"h:5", "m1:1", "h:5"},
	} {
		t.Setenv("ALCOVE_MASTER", tc.env)
		g := &globals{master: tc.flag}
		if got := strings.Join(g.masterAddresses(), ","); got != tc.want {
			t.Errorf("masterAddresses(flag %q, env %q) = %q, want %q", tc.flag, tc.env, got, tc.want)
		}
	}
}
