package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// newRunTestsCmd writes and reads back a file for every write type × read
// type pair under /default_tests_files, as Alluxio's runTests does.
func newRunTestsCmd(g *globals) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "runTests",
		Short: "Write and read back a file with every write type and read type",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				const dir = "/default_tests_files"
				data := make([]byte, 3<<20+17)
				for i := range data {
					data[i] = byte(i*7 + i>>10)
				}
				failed := 0
				for _, wt := range []apiv1.WriteType{apiv1.WriteType_MUST_CACHE, apiv1.WriteType_CACHE_THROUGH, apiv1.WriteType_THROUGH, apiv1.WriteType_ASYNC_THROUGH} {
					for _, rt := range []apiv1.ReadType{apiv1.ReadType_CACHE_PROMOTE, apiv1.ReadType_CACHE, apiv1.ReadType_NO_CACHE} {
						p := fmt.Sprintf("%s/BASIC_%s_%s", dir, rt, wt)
						err := roundTrip(ctx, c, p, data, wt, rt)
						status := "Passed the test!"
						if err != nil {
							status = "FAILED: " + oneLine(err)
							failed++
						}
						fmt.Fprintf(cmd.OutOrStdout(), "runTest --operation BASIC --readType %s --writeType %s\n%s\n", rt, wt, status)
					}
				}
				if !keep {
					if err := c.Delete(ctx, dir, true, false); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: clean up %s: %v\n", dir, err)
					}
				}
				if failed > 0 {
					return fmt.Errorf("%d of 12 tests failed", failed)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the test files")
	return cmd
}

func roundTrip(ctx context.Context, c *client.Client, p string, data []byte, wt apiv1.WriteType, rt apiv1.ReadType) error {
	w, err := c.Create(ctx, p, client.WriteOptions{WriteType: wt, BlockSize: 1 << 20, Recursive: true, Overwrite: true})
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	r, err := c.OpenFile(ctx, p, rt)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%s: read back %d bytes that differ from the %d written", p, len(got), len(data))
	}
	return nil
}
