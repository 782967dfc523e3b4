package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/fuse"
	"github.com/alcove-io/alcove/test/prereq"
)

// smallFile is file i's content: 64 KiB that name the file.
func smallFile(i int) []byte {
	b := pseudoRandom(64<<10, byte(i))
	binary.LittleEndian.PutUint64(b, uint64(i))
	return b
}

// TestSmallFilesSurviveMasterKill9: new files written through a FUSE mount
// (ASYNC_THROUGH, the new-file path: created incomplete, streamed,
// completed at close) whose close(2) returned are all there, complete and
// with their bytes, after kill -9 of the master process in the middle of
// the stream of files and its restart. close(2) is the acknowledgement:
// a file whose completion were still on its way to the master's journal
// when close returned would come back incomplete or not at all, and
// another client, asked right after close (every 10th file), would not
// see it complete (close-to-open).
func TestSmallFilesSurviveMasterKill9(t *testing.T) {
	prereq.Root(t)
	prereq.DevFuse(t)
	c := startProcs(t, "n1")
	cl := c.client("n1", apiv1.WriteType_ASYNC_THROUGH, 0)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fuse.Mount(context.Background(), fuse.Config{MountPoint: mnt, Client: cl, StageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	dir := filepath.Join(mnt, "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	other := c.client("n1", 0, 0)
	acked := make(chan int, 100000)
	stop := make(chan struct{})
	done := make(chan struct{})
	failed := 0
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Like cp: create, write, close; an error (the master is down
			// for longer than the client retries) is not an acknowledgement.
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), smallFile(i), 0o644); err != nil {
				failed++
				continue
			}
			if i%10 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				fi, err := other.GetStatus(ctx, fmt.Sprintf("/tree/f%05d", i))
				cancel()
				if err != nil || !fi.GetCompleted() || fi.GetLength() != 64<<10 {
					t.Errorf("f%05d right after its close, from another client: %v, %v", i, fi, err)
					return
				}
			}
			acked <- i
		}
	}()
	waitAcked := func(n int) {
		t.Helper()
		deadline := time.After(2 * time.Minute)
		for len(acked) < n {
			select {
			case <-deadline:
				t.Fatalf("only %d files acknowledged, want %d", len(acked), n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitAcked(150)
	c.master.kill9()
	c.master.start()
	waitAcked(len(acked) + 150)
	close(stop)
	<-done
	close(acked)

	check := c.client("n1", 0, 0)
	n := 0
	for i := range acked {
		p := fmt.Sprintf("/tree/f%05d", i)
		fi := stat(t, check, p)
		if !fi.GetCompleted() || fi.GetLength() != 64<<10 {
			t.Fatalf("%s, acknowledged before the kill or after the restart: completed %v, length %d", p, fi.GetCompleted(), fi.GetLength())
		}
		got, err := readFile(check, p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if !bytes.Equal(got, smallFile(i)) {
			t.Fatalf("%s: wrong content", p)
		}
		n++
	}
	t.Logf("%d acknowledged files intact after kill -9 of the master (%d writes failed while it was down)", n, failed)
}
