package csi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

func lockTestNode(t *testing.T, cfg NodeConfig) *nodeServer {
	t.Helper()
	cfg.StateDir = t.TempDir()
	if cfg.MountTimeout == 0 {
		cfg.MountTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &nodeServer{d: &Driver{cfg: Config{NodeID: "n1"}}, cfg: cfg, log: klog.Background(), mounter: mount.New(""),
		staged: map[string]*stagedVolume{}, locks: map[string]*volumeLock{}, loopCtx: ctx, stopLoop: cancel}
}

// One volume's operations wait for each other (until the RPC's deadline:
// Aborted); another volume's do not; no lock is left behind.
func TestVolumeLocks(t *testing.T) {
	n := lockTestNode(t, NodeConfig{})
	unlock, err := n.lockVolume(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := n.lockVolume(ctx, "v1"); status.Code(err) != codes.Aborted {
		t.Fatalf("second lock of v1: %v, want Aborted", err)
	}
	if _, ok := n.tryLockVolume("v1"); ok {
		t.Fatal("the health loop took v1 while an RPC held it")
	}
	unlock2, err := n.lockVolume(context.Background(), "v2")
	if err != nil {
		t.Fatalf("v2 waited for v1: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := n.lockVolume(context.Background(), "v1")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("a waiter did not get v1 after its release: %v", err)
	}
	unlock2()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.locks) != 0 {
		t.Fatalf("locks left: %v", n.locks)
	}
}

// A FUSE daemon that never mounts is given up when the RPC's context ends,
// not after the mount timeout, and is killed.
func TestSpawnFollowsContext(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "alcove")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := lockTestNode(t, NodeConfig{AlcoveBinary: script})
	v := &stagedVolume{VolumeID: "v1", StagingPath: filepath.Join(dir, "staging"), Path: "/volumes/v1", Context: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := n.spawn(ctx, v)
	if err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("spawn: %v, want it to give up with the context", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("spawn took %v: it waited for the mount timeout, not the context", took)
	}
}
