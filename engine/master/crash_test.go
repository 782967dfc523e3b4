package master

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

const crashEnv = "ALCOVE_MASTER_CRASH_DIR"

// TestMasterCrashChild is the master process killed by TestKill9KeepsAcknowledged.
func TestMasterCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run as a subprocess")
	}
	c := startMaster(t, dir+"/master", dir+"/ufs")
	for i := 0; ; i++ {
		p := fmt.Sprintf("/crash/f%d", i)
		c.writeFile(p, int64(i), apiv1.WriteType_MUST_CACHE)
		if i%3 == 0 {
			if _, err := c.fs.Rename(c.ctx, &apiv1.RenameRequest{Src: p, Dst: p + "-renamed"}); err != nil {
				t.Fatal(err)
			}
			p += "-renamed"
		}
		fmt.Printf("ACK %s\n", p)
	}
}

func TestKill9KeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/ufs", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMasterCrashChild$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 60 {
		if p, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked = append(acked, p)
		}
	}
	_ = cmd.Process.Kill() // SIGKILL, mid-write
	_ = cmd.Wait()
	if len(acked) < 60 {
		t.Fatalf("child acknowledged only %d files", len(acked))
	}
	c := startMaster(t, dir+"/master", dir+"/ufs")
	for i, p := range acked {
		fi := c.stat(p)
		if !fi.Completed || fi.Length != int64(i) {
			t.Fatalf("%s after kill -9: %+v", p, fi)
		}
		if i%3 == 0 {
			_, err := c.fs.GetStatus(c.ctx, &apiv1.GetStatusRequest{Path: strings.TrimSuffix(p, "-renamed")})
			wantCode(t, err, codes.NotFound, "rename source after kill -9")
		}
	}
	ls := c.ls("/crash", false)
	if int64(len(ls))+2 != c.m.inodeCount() {
		t.Fatalf("inode count %d for %d files (double apply?)", c.m.inodeCount(), len(ls))
	}
}
