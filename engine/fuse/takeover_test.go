package fuse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// TestHelperDaemon is not a test: TestTakeover runs the test binary as a
// FUSE daemon process (mount or takeover) through it.
func TestHelperDaemon(t *testing.T) {
	mode := os.Getenv("ALCOVE_FUSE_HELPER")
	if mode == "" {
		t.Skip("helper process only")
	}
	c, err := client.New(client.Config{MasterAddresses: []string{os.Getenv("ALCOVE_MASTER")}, Node: testNode,
		WriteType: apiv1.WriteType_MUST_CACHE, BlockSize: 1 << 20})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	cfg := Config{Client: c, MountPoint: os.Getenv("ALCOVE_MNT"), StageDir: os.Getenv("ALCOVE_STAGE"),
		HandoverSocket: os.Getenv("ALCOVE_SOCK"), DisablePassthrough: os.Getenv("ALCOVE_NO_PASSTHROUGH") != "",
		AttrTimeout: time.Millisecond, EntryTimeout: time.Millisecond}
	var srv *Server
	if mode == "mount" {
		srv, err = Mount(context.Background(), cfg)
	} else {
		srv, err = Takeover(context.Background(), cfg, cfg.HandoverSocket)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("SERVING")
	err = srv.Wait()
	if errors.Is(err, ErrHandedOver) {
		os.Exit(0)
	}
	os.Exit(3)
}

type daemon struct {
	cmd  *exec.Cmd
	done chan error
}

func startDaemon(t *testing.T, mode string, env []string) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDaemon$", "-test.v=false")
	cmd.Env = append(append(os.Environ(), "ALCOVE_FUSE_HELPER="+mode), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); l == "SERVING" || strings.HasPrefix(l, "ERROR") {
				ready <- l
			}
		}
		d.done <- cmd.Wait()
	}()
	select {
	case l := <-ready:
		if l != "SERVING" {
			t.Fatalf("%s daemon: %s", mode, l)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s daemon did not start", mode)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return d
}

// TestTakeover replaces the daemon process while a reader streams a file
// through the mount and a writer has a file half written: neither sees an
// error and the bytes are right.
func TestTakeover(t *testing.T) {
	for _, tc := range []struct {
		name        string
		passthrough bool
	}{{"daemon reads", false}, {"passthrough", true}} {
		t.Run(tc.name, func(t *testing.T) { testTakeover(t, tc.passthrough) })
	}
}

func testTakeover(t *testing.T, passthrough bool) {
	size := int64(1 << 30) // the acceptance: 1 GiB streamed across the switch
	if s := os.Getenv("ALCOVE_TAKEOVER_MB"); s != "" {
		mb, _ := strconv.Atoi(s)
		size = int64(mb) << 20
	}
	cl := startCluster(t, clusterOpts{quota: size + 256<<20})
	c := cl.client(t, apiv1.WriteType_MUST_CACHE, 0)
	e := &env{cluster: cl, c: c}
	data := randData(20, int(size))
	e.put(t, "/stream.bin", data)
	e.waitLocal(t, "/stream.bin")

	mnt := filepath.Join(cl.dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	sock := filepath.Join(cl.dir, "handover.sock")
	env := []string{"ALCOVE_MASTER=" + cl.m.Addr(), "ALCOVE_MNT=" + mnt, "ALCOVE_STAGE=" + filepath.Join(cl.dir, "stage"), "ALCOVE_SOCK=" + sock}
	if !passthrough {
		env = append(env, "ALCOVE_NO_PASSTHROUGH=1")
	}
	old := startDaemon(t, "mount", env)
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	// A request lost across the switch would block its caller for good;
	// the watchdog turns that into a failure instead of a hung test.
	ensureFusectl(t)
	abort, err := abortFile(mnt)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(3*time.Minute, func() {
		t.Errorf("still running after 3 min (a request lost across the handover?): aborting the FUSE connection")
		os.WriteFile(abort, []byte("1"), 0)
	})
	defer watchdog.Stop()

	// A reader streams the file, slowly enough for the switch to happen
	// in the middle.
	rf, err := os.Open(filepath.Join(mnt, "stream.bin"))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		got []byte
		err error
	}
	half := make(chan struct{})
	res := make(chan result, 1)
	go func() {
		defer rf.Close()
		var out bytes.Buffer
		buf := make([]byte, 1<<20)
		var halfOnce bool
		for {
			n, err := rf.Read(buf)
			out.Write(buf[:n])
			if !halfOnce && int64(out.Len()) >= size/4 {
				halfOnce = true
				close(half)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				res <- result{out.Bytes(), err}
				return
			}
			time.Sleep(time.Duration(size>>20) * time.Millisecond / 64)
		}
		res <- result{out.Bytes(), nil}
	}()
	// A writer has written half of a file.
	wpath := filepath.Join(mnt, "written.bin")
	wdata := randData(21, 3<<20)
	wf, err := os.Create(wpath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.Write(wdata[:len(wdata)/2]); err != nil {
		t.Fatal(err)
	}
	// A directory is open.
	df, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	<-half
	// Metadata requests keep arriving throughout the switch: each one the
	// old daemon reads must be answered by the successor.
	statStop, statDone := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-statStop:
				statDone <- nil
				return
			default:
			}
			if _, err := os.Stat(filepath.Join(mnt, "stream.bin")); err != nil {
				statDone <- fmt.Errorf("stat %d across the handover: %w", i, err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	start := time.Now()
	successor := startDaemon(t, "takeover", env)
	select {
	case err := <-old.done:
		if err != nil {
			t.Fatalf("old daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("old daemon did not exit after the handover")
	}
	t.Logf("handover took %v", time.Since(start))
	close(statStop)
	if err := <-statDone; err != nil {
		t.Fatal(err)
	}

	if _, err := wf.Write(wdata[len(wdata)/2:]); err != nil {
		t.Fatalf("write after handover: %v", err)
	}
	if err := wf.Close(); err != nil {
		t.Fatalf("close after handover: %v", err)
	}
	names, err := df.Readdirnames(-1)
	df.Close()
	if err != nil || len(names) < 2 {
		t.Fatalf("readdir of a directory opened before the handover: %v %v", names, err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("reader failed across the handover after %d bytes: %v", len(r.got), r.err)
	}
	mustEqual(t, "streamed across the handover", r.got, data)
	mustEqual(t, "written across the handover", mustRead(t, wpath), wdata)
	// The new daemon serves new operations.
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "new file", mustRead(t, filepath.Join(mnt, "new")), []byte("new"))
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	select {
	case <-successor.done:
	case <-time.After(10 * time.Second):
		t.Fatal("successor did not exit on unmount")
	}
}
