package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// dataLoads: a DataLoad applied with kubectl reaches Complete (kubectl
// wait), its status shows 100 %, and `alcove fs stat` agrees; deleting a
// running DataLoad cancels its job (the chart's job workers are capped at
// 16 MB/s in the test values, so a 96 MiB load runs for seconds).
func (c *cluster) dataLoads(ctx context.Context) (err error) {
	defer func() {
		if err != nil { // what the DataLoads and the job tier said
			dls, _ := c.kubectl(ctx, "get", "dataloads", "-n", testNS, "-o", "yaml")
			logs, _ := c.kubectl(ctx, "logs", "-n", releaseNS, "-l", "app.kubernetes.io/name=alcove", "-c", "job-worker", "--prefix", "--tail=20")
			jm, _ := c.kubectl(ctx, "logs", "-n", releaseNS, release+"-job-master-0", "--tail=30")
			err = fmt.Errorf("%w\n%s\n%s\n%s", err, lastLines(dls, 40), logs, jm)
		}
	}()
	master := func(script string) (string, error) {
		return c.kubectl(ctx, "exec", "-n", releaseNS, release+"-master-0", "--", "sh", "-c", script)
	}
	// 24 MiB files (busybox head takes no "M" suffix).
	if _, err := master(`set -e
head -c 25165824 /dev/urandom > /tmp/dl
for d in /warm /slow; do alcove fs mkdir $d; done
for i in 1 2; do alcove fs copyFromLocal --write-type THROUGH /tmp/dl /warm/f$i; done
for i in 1 2 3 4; do alcove fs copyFromLocal --write-type THROUGH /tmp/dl /slow/f$i; done`); err != nil {
		return fmt.Errorf("write the UFS data: %w", err)
	}
	dl := func(name, path string) string {
		return fmt.Sprintf("apiVersion: alcove.io/v1alpha1\nkind: DataLoad\nmetadata: {name: %s}\nspec: {path: %s}\n", name, path)
	}
	if err := c.apply(ctx, dl("warm", "/warm")); err != nil {
		return err
	}
	if out, err := c.kubectl(ctx, "wait", "-n", testNS, "--for=condition=Complete", "dataload/warm", "--timeout=180s"); err != nil {
		return fmt.Errorf("kubectl wait: %w: %s", err, out)
	}
	get, err := c.kubectl(ctx, "get", "dataloads", "-n", testNS, "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Print(indent(get))
	if st, err := c.kubectl(ctx, "get", "dataload/warm", "-n", testNS, "-o", "jsonpath={.status.progress} {.status.bytesLoaded} {.status.bytesTotal}"); err != nil || strings.TrimSpace(st) != "100 50331648 50331648" {
		return fmt.Errorf("status progress, bytesLoaded, bytesTotal %q (%v), want 100 50331648 50331648", st, err)
	}
	out, err := master("alcove fs stat -o json /warm")
	if err != nil {
		return err
	}
	var st struct {
		InAlcove int `json:"inAlcovePercentage"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.InAlcove != 100 {
		return fmt.Errorf("alcove fs stat /warm: %d%% (%v): %s", st.InAlcove, err, out)
	}

	if err := c.apply(ctx, dl("slow", "/slow")); err != nil {
		return err
	}
	if out, err := c.kubectl(ctx, "wait", "-n", testNS, "--for=jsonpath={.status.phase}=Running", "dataload/slow", "--timeout=60s"); err != nil {
		return fmt.Errorf("kubectl wait Running: %w: %s", err, out)
	}
	id, err := c.kubectl(ctx, "get", "dataload/slow", "-n", testNS, "-o", "jsonpath={.status.jobId}")
	if err != nil || strings.TrimSpace(id) == "" {
		return fmt.Errorf("status.jobId %q: %v", id, err)
	}
	if out, err := c.kubectl(ctx, "delete", "-n", testNS, "dataload/slow", "--timeout=60s"); err != nil {
		return fmt.Errorf("kubectl delete: %w: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := master("alcove job stat -o json " + strings.TrimSpace(id))
		if err == nil && strings.Contains(out, "JOB_CANCELED") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s of the deleted DataLoad is not canceled: %v %s", id, err, out)
		}
		time.Sleep(time.Second)
	}
	fmt.Printf("      DataLoad warm Complete at 100%% (fs stat agrees); deleting DataLoad slow canceled job %s\n", strings.TrimSpace(id))
	return nil
}
