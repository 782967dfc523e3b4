package client_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/test/alcovetest"
)

// WriteTo into a file descriptor sends blocks of the local worker with
// sendfile (cached ones, and cold ones once loaded); into anything else it
// copies. Every output gets the file's bytes.
func TestWriteToOutputs(t *testing.T) {
	cl := alcovetest.Start(t, node)
	c := newClient(t, cl.MasterAddr, nil)
	data := randBytes(5, 5<<20+12345)
	put(t, c, "/cached", data, apiv1.WriteType_MUST_CACHE)
	outputs := []struct {
		name string
		run  func(t *testing.T, send func(io.Writer) (int64, error)) []byte
	}{
		{"pipe", func(t *testing.T, send func(io.Writer) (int64, error)) []byte {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan []byte)
			go func() { b, _ := io.ReadAll(pr); pr.Close(); got <- b }()
			_, err = send(pw)
			pw.Close()
			b := <-got
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"regular file", func(t *testing.T, send func(io.Writer) (int64, error)) []byte {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := send(f); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"buffer", func(t *testing.T, send func(io.Writer) (int64, error)) []byte {
			var b bytes.Buffer
			if _, err := send(&b); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		}},
	}
	for i, out := range outputs {
		// A cold file each time: its blocks are loaded into the worker first.
		cold := "/cold" + strconv.Itoa(i)
		put(t, c, cold, data, apiv1.WriteType_THROUGH)
		for _, p := range []string{"/cached", cold} {
			t.Run(out.name+p, func(t *testing.T) {
				r, err := c.OpenFile(context.Background(), p, apiv1.ReadType_CACHE)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if i == 0 {
					// Start part way into a block: the rest of it is sent.
					if _, err := r.Seek(12345, io.SeekStart); err != nil {
						t.Fatal(err)
					}
				}
				got := out.run(t, r.WriteTo)
				want := data
				if i == 0 {
					want = data[12345:]
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d bytes out differ from the %d of the file", len(got), len(want))
				}
				if n := r.Stats.ShortCircuit.Load() + r.Stats.UFS.Load(); n != int64(len(want)) {
					t.Errorf("stats count %d bytes from the local worker, want %d", n, len(want))
				}
			})
		}
	}
}
