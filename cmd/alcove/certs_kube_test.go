package main

import (
	"strings"
	"testing"
)

func TestRoleRequests(t *testing.T) {
	for _, tc := range []struct {
		name       string
		roles, dns []string
		want       string // role:name:dns;... or the error's text
	}{
		{"roles and names", []string{"master", "worker"}, []string{"master=m-0.m", "master=m.ns.svc"}, "master:rel-master:m-0.m,m.ns.svc;worker:rel-worker:"},
		{"unknown role", []string{"boss"}, nil, `--role "boss"`},
		{"twice", []string{"node", "node"}, nil, "given twice"},
		{"dns of a role not asked", []string{"master"}, []string{"job=j"}, `--dns "job=j"`},
		{"dns without =", []string{"master"}, []string{"m"}, `--dns "m"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := roleRequests("rel", tc.roles, tc.dns)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				var parts []string
				for _, r := range reqs {
					parts = append(parts, string(r.Role)+":"+r.Name+":"+strings.Join(r.DNSNames, ","))
				}
				got = strings.Join(parts, ";")
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
