package csi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alcove-io/alcove/engine/security"
)

// A FUSE daemon acts for one volume only: with TLS on, it gets the cluster
// CA alone (no component certificate) and a volume token from the master
// that confines it to the volume's directory (engine/security/volume.go).
// The node plugin keeps the token fresh; the daemon's client reads the file
// on every call.

// Environment of `alcove fuse` (cmd/alcove: client configuration).
const (
	envTLSDir    = "ALCOVE_TLS_DIR"
	envTokenFile = "ALCOVE_TOKEN_FILE"
)

// tokenPath is where v's daemon finds its volume token.
func (n *nodeServer) tokenPath(volumeID string) string {
	return strings.TrimSuffix(n.statePath(volumeID), ".json") + ".token"
}

// caDir holds a copy of the cluster CA for the daemons.
func (n *nodeServer) caDir() string { return filepath.Join(n.cfg.StateDir, "ca") }

// daemonEnv is the environment of v's FUSE daemon: the plugin's own, with
// the CA-only TLS directory and a fresh volume token when TLS is on.
func (n *nodeServer) daemonEnv(ctx context.Context, v *stagedVolume) ([]string, error) {
	env := os.Environ()
	if n.cfg.CAFile == "" {
		return env, nil // TLS off: nothing to confine with
	}
	if err := n.writeVolumeToken(ctx, v); err != nil {
		return nil, err
	}
	kept := env[:0]
	for _, e := range env {
		if !strings.HasPrefix(e, envTLSDir+"=") && !strings.HasPrefix(e, envTokenFile+"=") {
			kept = append(kept, e)
		}
	}
	return append(kept, envTLSDir+"="+n.caDir(), envTokenFile+"="+n.tokenPath(v.VolumeID)), nil
}

// writeVolumeToken asks the master for v's token and writes it with a
// current copy of the CA (a rotated CA reaches the daemons this way).
func (n *nodeServer) writeVolumeToken(ctx context.Context, v *stagedVolume) error {
	if err := security.WriteCAOnly(n.cfg.CAFile, n.caDir()); err != nil {
		return err
	}
	tok, _, err := n.d.ns.IssueVolumeToken(ctx, v.Path)
	if err != nil {
		return fmt.Errorf("volume token for %s: %w", v.Path, err)
	}
	return security.WriteAtomic(n.tokenPath(v.VolumeID), []byte(tok), 0o600)
}

// renewToken re-issues v's token once it is older than
// security.VolumeTokenRenewAfter (the health loop calls it).
func (n *nodeServer) renewToken(ctx context.Context, v *stagedVolume) {
	if n.cfg.CAFile == "" {
		return
	}
	if fi, err := os.Stat(n.tokenPath(v.VolumeID)); err == nil && time.Since(fi.ModTime()) < security.VolumeTokenRenewAfter {
		return
	}
	if err := n.writeVolumeToken(ctx, v); err != nil {
		n.log.Error(err, "renew the FUSE daemon's volume token", "volume", v.VolumeID)
	}
}
