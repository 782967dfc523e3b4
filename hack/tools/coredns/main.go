// Command coredns is CoreDNS with only the plugins the end-to-end cluster's
// DNS needs (cluster.local from the apiserver). Built by hack/cluster-bins.sh;
// a custom plugin list keeps the build small (no cloud DNS providers).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
)

// directives lists the plugins in execution order (a subset of CoreDNS's
// plugin.cfg, same order).
var directives = []string{"log", "health", "errors", "kubernetes", "cache"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
