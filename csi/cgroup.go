package csi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// In Kubernetes the node plugin is a container: when its pod goes, the
// runtime kills every process of the container's cgroup (and kubelet every
// process of the pod's), FUSE daemons included, and every pod reading a
// volume gets ENOTCONN. A daemon moved to a cgroup outside the pod (with
// hostPID, so no PID namespace dies with the container either) outlives the
// node plugin; the next node plugin adopts it from the state directory.

// moveToCgroup moves pid into cgroup (a path such as /alcove-fuse) in every
// hierarchy mounted under root (the host's /sys/fs/cgroup as the container
// sees it): cgroup v1 (one directory per controller) and v2 (unified).
func moveToCgroup(root, cgroup string, pid int) error {
	var hierarchies []string
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err == nil {
		hierarchies = []string{root} // v2
	} else {
		entries, err := os.ReadDir(root)
		if err != nil {
			return fmt.Errorf("read cgroup root %s: %w", root, err)
		}
		for _, e := range entries {
			h := filepath.Join(root, e.Name())
			if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil && e.IsDir() {
				hierarchies = append(hierarchies, h)
			}
		}
	}
	if len(hierarchies) == 0 {
		return fmt.Errorf("no cgroup hierarchy under %s", root)
	}
	var errs []error
	for _, h := range hierarchies {
		dir := filepath.Join(h, filepath.Clean("/"+cgroup))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create cgroup %s: %w", dir, err))
			continue
		}
		// A new cpuset cgroup has no CPUs or memory nodes: inherit them.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(b)) == "" {
				if pb, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
					_ = os.WriteFile(filepath.Join(dir, f), pb, 0o644)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("move pid %d to %s: %w", pid, dir, err))
		}
	}
	return errors.Join(errs...)
}
