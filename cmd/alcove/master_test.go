package main

import (
	"testing"

	"github.com/alcove-io/alcove/engine/journal"
)

func TestJournalMembers(t *testing.T) {
	for _, tc := range []struct {
		name, list, id, self string
		want                 journal.Peer
		others               int
		bad                  bool
	}{
		{"by id", "a=h1:19200,b=h2:19200,c=h3:19200", "b", "", journal.Peer{ID: "b", Address: "h2:19200"}, 2, false},
		{"by address", "a=h1:19200,b=h2:19200", "", "h1:19200", journal.Peer{ID: "a", Address: "h1:19200"}, 1, false},
		{"alluxio form", "h1:19200, h2:19200,h3:19200", "", "h3:19200", journal.Peer{ID: "h3:19200", Address: "h3:19200"}, 2, false},
		{"not listed", "a=h1:19200", "", "h9:19200", journal.Peer{}, 0, true},
		{"unknown id", "a=h1:19200", "z", "", journal.Peer{}, 0, true},
		{"no port", "a=h1", "a", "", journal.Peer{}, 0, true},
		{"bad port", "a=h1:99999", "a", "", journal.Peer{}, 0, true},
		{"duplicate", "a=h1:1,a=h2:1", "a", "", journal.Peer{}, 0, true},
		{"empty", " , ", "", "h1:1", journal.Peer{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self, others, err := journalMembers(tc.list, tc.id, tc.self)
			if (err != nil) != tc.bad {
				t.Fatalf("err %v", err)
			}
			if !tc.bad && (self != tc.want || len(others) != tc.others) {
				t.Fatalf("self %v others %v", self, others)
			}
		})
	}
}
