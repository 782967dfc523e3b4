package e2e

// POSIX behaviour kubelet and pods rely on, checked in pods on the real
// cluster: Alcove's own checks of what the storage suite's subPath specs
// found (issue 17) before the POSIX work fixed it.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodPOSIX(t *testing.T) {
	c := newCluster(t)
	inst := c.installed()
	c.check("subpath-of-removed-dir-pod-terminates", inst, c.subPathRemovedDir)
	c.check("symlink-in-volume", inst, c.symlinkInVolume)
	c.check("helm-uninstall-leaves-no-mounts", inst, func(ctx context.Context) error { return c.uninstall(ctx, "") })
}

// subPathRemovedDir: a pod mounts a subPath of a PVC; another pod on the
// same node removes that directory through the whole volume; deleting the
// first pod must finish within 30 s. (When the FUSE Getattr of the removed
// directory answered ENOENT, kubelet took the subPath bind mount for
// unmounted, leaked it and the pod stayed Terminating; now it answers with
// nlink 0, as tmpfs does.)
func (c *cluster) subPathRemovedDir(ctx context.Context) error {
	user := pod("subpath-user", "busybox", "echo ready > /sub/marker; sleep 3600", false)
	user = replaceOnce(user, "    - {name: data, mountPath: /data}\n", "    - {name: data, mountPath: /sub, subPath: sub1}\n")
	if err := c.apply(ctx, pvcYAML+"---\n"+user); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "subpath-user", false, 3*time.Minute); err != nil {
		return err
	}
	node, err := c.podNode(ctx, testNS, "subpath-user")
	if err != nil {
		return err
	}
	remover := pod("subpath-remover", "busybox", "cat /data/sub1/marker; rm -rf /data/sub1; test ! -e /data/sub1; echo removed", false)
	remover = replaceOnce(remover, "  restartPolicy: Never\n", "  restartPolicy: Never\n  nodeSelector: {kubernetes.io/hostname: "+node+"}\n")
	if err := c.apply(ctx, remover); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "subpath-remover", true, 2*time.Minute); err != nil {
		return err
	}
	grace := int64(1)
	start := time.Now()
	if err := c.cs.CoreV1().Pods(testNS).Delete(ctx, "subpath-user", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = poll(wctx, 500*time.Millisecond, "pod subpath-user deleted", func() (bool, error) {
		_, err := c.cs.CoreV1().Pods(testNS).Get(wctx, "subpath-user", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		// Let the rest of the run go on: force the pod out (kubelet keeps
		// the leaked mount until the cluster goes down).
		zero := int64(0)
		_ = c.cs.CoreV1().Pods(testNS).Delete(ctx, "subpath-user", metav1.DeleteOptions{GracePeriodSeconds: &zero})
		return fmt.Errorf("the pod using subPath sub1 on %s is still there 30 s after its deletion (the directory was removed by another pod): %w", node, err)
	}
	fmt.Printf("      pod with subPath of a removed directory on %s deleted in %v\n", node, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// symlinkInVolume: a pod creates a symlink in a PVC and reads through it
// (the subPath "outside the volume" specs of the storage suite start so).
// Today the FUSE mount answers ENOSYS.
func (c *cluster) symlinkInVolume(ctx context.Context) error {
	script := `echo target > /data/symlink-target
busybox ln -s symlink-target /data/symlink
[ "$(busybox readlink /data/symlink)" = symlink-target ]
[ "$(cat /data/symlink)" = target ]
echo SYMLINK-OK`
	if err := c.apply(ctx, pod("symlinker", "busybox", script, false)); err != nil {
		return err
	}
	if err := c.waitPod(ctx, testNS, "symlinker", true, 2*time.Minute); err != nil {
		return err
	}
	out, err := c.logs(ctx, testNS, "symlinker")
	if err != nil || !strings.Contains(out, "SYMLINK-OK") {
		return fmt.Errorf("symlinker output (%v):\n%s", err, out)
	}
	return nil
}

func replaceOnce(s, old, new string) string {
	out := strings.Replace(s, old, new, 1)
	if out == s {
		panic(fmt.Sprintf("%q not in %q", old, s))
	}
	return out
}
