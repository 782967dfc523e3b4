package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	mount "k8s.io/mount-utils"
)

// FUSE daemons are processes of their own (`alcove fuse`), started in a new
// session so that they outlive a restart of the node plugin: a staged
// volume keeps serving while the plugin is away.

// spawn starts a FUSE daemon for v at its staging path and waits for the
// mount to appear, at most the mount timeout and while ctx lasts. The daemon
// outlives ctx once mounted (it serves the volume, not the call).
func (n *nodeServer) spawn(ctx context.Context, v *stagedVolume) error {
	if err := os.MkdirAll(v.StagingPath, 0o750); err != nil {
		return fmt.Errorf("create staging path: %w", err)
	}
	args := append(daemonArgs(v, strings.Join(n.cfg.MasterAddresses, ","), n.d.cfg.NodeID), n.cfg.FuseArgs...)
	logPath := strings.TrimSuffix(n.statePath(v.VolumeID), ".json") + ".log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open FUSE daemon log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(n.cfg.AlcoveBinary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start FUSE daemon %s: %w", n.cfg.AlcoveBinary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it whenever it ends
	if n.cfg.FuseCgroup != "" {
		if err := moveToCgroup(n.cfg.CgroupRoot, n.cfg.FuseCgroup, cmd.Process.Pid); err != nil {
			n.log.Error(err, "FUSE daemon stays in the node plugin's cgroup: it will not outlive the plugin's pod", "volume", v.VolumeID)
		}
	}
	deadline := time.Now().Add(n.cfg.MountTimeout)
	for !n.mounted(v.StagingPath) {
		select {
		case err := <-exited:
			return fmt.Errorf("FUSE daemon for %s exited before mounting (%v); see %s", v.VolumeID, err, logPath)
		case <-ctx.Done():
			cmd.Process.Kill()
			return fmt.Errorf("FUSE daemon for %s: gave up waiting for its mount: %w", v.VolumeID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return fmt.Errorf("FUSE daemon for %s did not mount %s within %v; see %s", v.VolumeID, v.StagingPath, n.cfg.MountTimeout, logPath)
		}
	}
	v.PID = cmd.Process.Pid
	n.log.Info("FUSE daemon mounted", "volume", v.VolumeID, "path", v.Path, "staging", v.StagingPath, "pid", v.PID)
	return nil
}

// daemonArgs is the FUSE daemon's command line for v: the volume context's
// FUSE options (checked by volumePath) become its flags.
func daemonArgs(v *stagedVolume, masters, node string) []string {
	args := []string{"fuse", "--mount-point", v.StagingPath, "--path", v.Path, "--master", masters, "--node-name", node}
	for _, o := range []struct{ key, flag string }{
		{ctxWriteType, "--write-type"},
		{ctxReadType, "--read-type"},
		{ctxReplication, "--replication-durable"},
	} {
		if val := v.Context[o.key]; val != "" {
			args = append(args, o.flag, val)
		}
	}
	return args
}

// mounted reports whether p is a FUSE mount point listed in mountinfo.
func (n *nodeServer) mounted(p string) bool {
	mps, err := n.mounter.List()
	if err != nil {
		return false
	}
	clean := filepath.Clean(p)
	for _, m := range mps {
		if m.Path == clean && strings.HasPrefix(m.Type, "fuse") {
			return true
		}
	}
	return false
}

// healthy reports whether p is a live mount: listed in mountinfo and
// answering stat (a dead FUSE daemon leaves ENOTCONN behind).
func (n *nodeServer) healthy(p string) bool {
	if !n.mounted(p) {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

// stopDaemon unmounts the staging path (the daemon exits when its mount
// goes) and signals the daemon in case it lingers.
func (n *nodeServer) stopDaemon(v *stagedVolume) error {
	if err := n.unmount(v.StagingPath); err != nil {
		return err
	}
	if v.PID > 0 && processIsFuse(v.PID) {
		syscall.Kill(v.PID, syscall.SIGTERM)
	}
	return nil
}

// unmount removes every mount at p (a dead FUSE mount lazily) and keeps
// the directory.
func (n *nodeServer) unmount(p string) error {
	for i := 0; i < 4; i++ {
		notMnt, err := n.mounter.IsLikelyNotMountPoint(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil && notMnt && !n.listed(p) {
			return nil
		}
		if err != nil && !mount.IsCorruptedMnt(err) {
			return fmt.Errorf("check mount %s: %w", p, err)
		}
		if uerr := syscall.Unmount(p, 0); uerr != nil {
			if uerr := syscall.Unmount(p, syscall.MNT_DETACH); uerr != nil && !errors.Is(uerr, syscall.EINVAL) {
				return fmt.Errorf("unmount %s: %w", p, uerr)
			}
		}
	}
	return nil
}

// listed reports whether mountinfo has any mount at p.
func (n *nodeServer) listed(p string) bool {
	mps, err := n.mounter.List()
	if err != nil {
		return false
	}
	for _, m := range mps {
		if m.Path == filepath.Clean(p) {
			return true
		}
	}
	return false
}

// processIsFuse guards against signalling a recycled pid.
func processIsFuse(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "fuse\x00--mount-point")
}

// restore re-establishes a staged volume whose daemon died: a fresh
// daemon at the staging path, then every published target bound again.
func (n *nodeServer) restore(ctx context.Context, v *stagedVolume) error {
	n.log.Info("Restoring a broken FUSE mount", "volume", v.VolumeID, "staging", v.StagingPath)
	if err := n.unmount(v.StagingPath); err != nil {
		return err
	}
	if err := n.spawn(ctx, v); err != nil {
		return err
	}
	for target, ro := range v.Targets {
		if err := n.unmount(target); err != nil {
			return err
		}
		if err := n.bind(v.StagingPath, target, ro); err != nil {
			return err
		}
	}
	return n.save(v)
}

// bind bind-mounts src on target, read-only when asked.
func (n *nodeServer) bind(src, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target %s: %w", target, err)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := n.mounter.Mount(src, target, "", opts); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	return nil
}
