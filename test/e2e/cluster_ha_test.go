package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Disruptions under load (issue 12): a pod writes and reads through the PVC
// in a checksummed loop while the worker DaemonSet restarts or the leading
// master's pod is deleted. No I/O of the pod may fail, and afterwards every
// file it wrote has its bytes, through the volume and in the UFS.

// ioLoopScript writes files of 64 to 256 KiB of random bytes to
// /data/DIR (dd with fsync, so a failed commit is a failed write), reads
// each back and re-reads an earlier one, every 0.2 s, until /tmp/stop
// exists; then checks every file against its sum and prints the sums.
// Any failed or wrong I/O ends the pod with IO-FAIL.
func ioLoopScript(dir string) string {
	return fmt.Sprintf(`d=/data/%[1]s
mkdir -p $d
: > /tmp/sums
i=0 r=1
fail() { echo "IO-FAIL $*"; exit 1; }
while [ ! -e /tmp/stop ] && [ $i -lt 3000 ]; do
  i=$((i+1))
  f=$d/f$i
  dd if=/dev/urandom of=/tmp/src bs=65536 count=$(( i %% 4 + 1 )) 2>/dev/null
  sum=$(md5sum /tmp/src | cut -d' ' -f1)
  dd if=/tmp/src of=$f bs=65536 conv=fsync 2>/tmp/err || fail "write $f: $(cat /tmp/err)"
  echo "$sum  $f" >> /tmp/sums
  got=$(md5sum $f 2>/tmp/err | cut -d' ' -f1)
  [ "$got" = "$sum" ] || fail "read back $f: got '$got' want $sum: $(cat /tmp/err)"
  r=$(( (r * 1103515245 + 12345) %% 2147483648 )); j=$(( r %% i + 1 ))
  old=$(sed -n "${j}p" /tmp/sums)
  got=$(md5sum $d/f$j 2>/tmp/err | cut -d' ' -f1)
  [ "$got" = "${old%%%% *}" ] || fail "re-read $d/f$j: got '$got' want ${old%%%% *}: $(cat /tmp/err)"
  echo $i > /tmp/progress
  sleep 0.2
done
md5sum -c /tmp/sums > /tmp/check 2>&1 || fail "final check: $(grep -v ': OK$' /tmp/check | head -5)"
echo "IOLOOP-OK $i files written, read back and checked"
sed 's/^/SUM /' /tmp/sums`, dir)
}

// ioLoopAcross runs the loop pod name, lets it make progress, runs disrupt,
// requires progress after it, stops the loop and checks what it wrote: the
// pod's own final check, and the files' UFS copies once persisted.
func (c *cluster) ioLoopAcross(ctx context.Context, name, pv string, disrupt func(context.Context) error) error {
	if err := c.apply(ctx, pod(name, "busybox", ioLoopScript(name), false)); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, name, false, 2*time.Minute); err != nil {
		return err
	}
	before, err := c.loopProgress(ctx, name, 0, 10)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := disrupt(ctx); err != nil {
		return err
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	during, err := c.loopProgress(ctx, name, before, 0)
	if err != nil {
		return err
	}
	after, err := c.loopProgress(ctx, name, during, 10) // going on at speed afterwards
	if err != nil {
		return err
	}
	if _, err := c.kubectl(ctx, "exec", "-n", testNS, name, "--", "touch", "/tmp/stop"); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, name, true, 2*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, name)
	if err != nil || !strings.Contains(out, "IOLOOP-OK") || strings.Contains(out, "IO-FAIL") {
		return fmt.Errorf("%s output (%v):\n%s", name, err, lastLines(out, 20))
	}
	sums := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "SUM" {
			sums[f[2]] = f[1]
		}
	}
	persisted, err := c.checkUFSCopies(ctx, pv, sums)
	if err != nil {
		return err
	}
	fmt.Printf("      disruption took %v; loop at file %d before, %d after it, %d at +10; %s",
		took, before, during, after, grep(out, "IOLOOP-OK"))
	fmt.Printf("      all %d files in the UFS with their sums (%d waited for persisting)\n", len(sums), persisted)
	return nil
}

// loopProgress waits until the loop pod's file counter passes from+more
// (more 0: passes from), and returns it.
func (c *cluster) loopProgress(ctx context.Context, name string, from, more int) (int, error) {
	want := from + max(more, 1)
	var n int
	var ended error
	err := poll(ctx, 500*time.Millisecond, fmt.Sprintf("%s past file %d", name, want), func() (bool, error) {
		p, err := c.cs.CoreV1().Pods(testNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase != corev1.PodRunning {
			ended = fmt.Errorf("pod %s is %s", name, p.Status.Phase)
			return true, nil
		}
		out, err := c.kubectl(ctx, "exec", "-n", testNS, name, "--", "cat", "/tmp/progress")
		if err != nil {
			return false, nil // before the first file
		}
		n, _ = strconv.Atoi(strings.TrimSpace(out))
		return n >= want, nil
	})
	if err == nil {
		err = ended
	}
	if err != nil {
		logs, _ := c.logs(ctx, testNS, name)
		return n, fmt.Errorf("%v; pod output:\n%s", err, lastLines(logs, 10))
	}
	return n, nil
}

// checkUFSCopies waits until every file (a path under /data of the loop
// pod) has its UFS copy with the right sum: ASYNC_THROUGH persists them
// after the fact, from caches that lived through the disruption.
func (c *cluster) checkUFSCopies(ctx context.Context, pv string, sums map[string]string) (waited int, err error) {
	v, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
	if err != nil || v.Spec.CSI == nil {
		return 0, fmt.Errorf("PV %s: %v", pv, err)
	}
	root := v.Spec.CSI.VolumeAttributes["path"]
	for f, want := range sums {
		ufs := path.Join(root, strings.TrimPrefix(f, "/data/"))
		var got string
		check := func() (bool, error) {
			b, err := c.ufsFile(ctx, ufs)
			if err != nil {
				return false, err
			}
			h := md5.Sum(b)
			got = hex.EncodeToString(h[:])
			return got == want, nil
		}
		if ok, _ := check(); ok {
			continue
		}
		waited++
		if err := poll(ctx, 500*time.Millisecond, "UFS copy of "+f, check); err != nil {
			return waited, fmt.Errorf("%s (md5 %q, want %s): %w", ufs, got, want, err)
		}
	}
	return waited, nil
}

// workerRollingRestart restarts the worker DaemonSet the way an upgrade
// does (kubectl rollout restart) and waits until the new pods are ready.
func (c *cluster) workerRollingRestart(ctx context.Context) error {
	ds := "daemonset/" + release + "-worker"
	if _, err := c.kubectl(ctx, "rollout", "restart", "-n", releaseNS, ds); err != nil {
		return err
	}
	_, err := c.kubectl(ctx, "rollout", "status", "-n", releaseNS, ds, "--timeout=3m")
	return err
}

// deleteLeaderMaster deletes the leading master's pod (graceful, as
// kubectl delete pod does) and waits until another master leads and the
// StatefulSet's new pod is ready again.
func (c *cluster) deleteLeaderMaster(ctx context.Context) error {
	leader, err := c.masterLeader(ctx, "")
	if err != nil {
		return err
	}
	old, err := c.cs.CoreV1().Pods(releaseNS).Get(ctx, leader, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := c.cs.CoreV1().Pods(releaseNS).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		return err
	}
	next, err := c.masterLeader(ctx, leader)
	if err != nil {
		return err
	}
	err = poll(ctx, 500*time.Millisecond, "a new pod "+leader, func() (bool, error) {
		p, err := c.cs.CoreV1().Pods(releaseNS).Get(ctx, leader, metav1.GetOptions{})
		return err == nil && p.UID != old.UID, nil
	})
	if err == nil {
		err = c.waitPod(ctx, releaseNS, leader, false, 2*time.Minute)
	}
	fmt.Printf("      leader %s deleted; %s leads\n", leader, next)
	return err
}

// masterLeader waits until exactly one master pod other than not reports
// alcove_master_leader 1, and returns its name.
func (c *cluster) masterLeader(ctx context.Context, not string) (string, error) {
	var leader string
	err := poll(ctx, 200*time.Millisecond, "a leading master", func() (bool, error) {
		pods, err := c.cs.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=master"})
		if err != nil {
			return false, err
		}
		var leaders []string
		for _, p := range pods.Items {
			if p.Name == not || p.Status.PodIP == "" {
				continue
			}
			if v, err := metricAt(ctx, p.Status.PodIP, 19999, "alcove_master_leader"); err == nil && v == 1 {
				leaders = append(leaders, p.Name)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Errorf("leaders %v", leaders)
		}
		leader = leaders[0]
		return true, nil
	})
	return leader, err
}
