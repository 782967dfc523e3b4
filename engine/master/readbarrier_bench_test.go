package master_test

import (
	"context"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/master"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// BenchmarkGetStatusReadBarrier measures what linearizable reads cost: the
// leader of a 3-member group confirms its leadership with a quorum before a
// GetStatus (coalesced across concurrent calls), against the same group
// serving from local state without the check (--unsafe-local-reads, the
// baseline). Serial is one caller; parallel is GOMAXPROCS*16 callers.
func BenchmarkGetStatusReadBarrier(b *testing.B) {
	for _, tc := range []struct {
		name   string
		unsafe bool
	}{{"barrier", false}, {"no-barrier", true}} {
		g := alcovetest.StartGroup(b, 3, func(c *master.Config) { c.UnsafeLocalReads = tc.unsafe })
		l := g.Leader(30 * time.Second)
		cc := dialB(b, g.Addrs()[l])
		fs := apiv1.NewFileSystemMasterClient(cc)
		ctx := context.Background()
		if _, err := fs.CreateDirectory(ctx, &apiv1.CreateDirectoryRequest{Path: "/bench/d", Recursive: true, WriteType: apiv1.WriteType_MUST_CACHE}); err != nil {
			b.Fatal(err)
		}
		get := func() {
			if _, err := fs.GetStatus(ctx, &apiv1.GetStatusRequest{Path: "/bench/d"}); err != nil {
				b.Error(err)
			}
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			for b.Loop() {
				get()
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get()
				}
			})
		})
		g.Close()
	}
}
