package client_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// workerMetric reads one counter from a worker's /metrics (loopback).
func workerMetric(t *testing.T, webAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + webAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exported by the worker", name)
	return 0
}

// Concurrent, out-of-order ReadAt calls on a file only the UFS has (what
// FUSE readahead sends) load each block into the local worker exactly once
// and read it from there; NO_CACHE streams without caching.
func TestReadAtLoadsBlocksIntoTheLocalWorker(t *testing.T) {
	for _, tc := range []struct {
		readType   apiv1.ReadType
		wantCached bool
	}{
		{apiv1.ReadType_CACHE, true},
		{apiv1.ReadType_NO_CACHE, false},
	} {
		t.Run(tc.readType.String(), func(t *testing.T) {
			cl := alcovetest.Start(t, node)
			web := cl.Workers[node].WebAddr()
			c := newClient(t, cl.MasterAddr, nil)
			data := randBytes(4, 6<<20+99)
			put(t, c, "/u", data, apiv1.WriteType_THROUGH)
			ufsBefore := workerMetric(t, web, "alcove_worker_bytes_read_ufs_total")

			r, err := c.OpenFile(context.Background(), "/u", tc.readType)
			if err != nil {
				t.Fatal(err)
			}
			const piece = 128 << 10
			var offs []int64
			for off := int64(0); off < int64(len(data)); off += piece {
				offs = append(offs, off)
			}
			rand.New(rand.NewPCG(7, 7)).Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
			offsets := make([][]int64, 8)
			for i, off := range offs {
				offsets[i%8] = append(offsets[i%8], off)
			}
			err = checkReadAt(r, data, piece, offsets)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}

			ufsRead := workerMetric(t, web, "alcove_worker_bytes_read_ufs_total") - ufsBefore
			info, err := c.GetStatus(context.Background(), "/u")
			if err != nil {
				t.Fatal(err)
			}
			cached := 0
			for _, fbi := range info.GetFileBlockInfos() {
				for _, loc := range fbi.GetBlockInfo().GetLocations() {
					if loc.GetNode() == node {
						cached++
					}
				}
			}
			if tc.wantCached {
				if ufsRead != float64(len(data)) {
					t.Errorf("the worker read %.0f bytes from the UFS for a %d-byte file; want each block once", ufsRead, len(data))
				}
				if cached != 7 {
					t.Errorf("%d of 7 blocks cached on %s after the read", cached, node)
				}
			} else if cached != 0 {
				t.Errorf("NO_CACHE read left %d blocks cached", cached)
			}
		})
	}
}
