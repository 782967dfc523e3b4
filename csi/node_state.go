package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// stagedVolume is a volume staged on this node: its FUSE daemon and the
// targets it is published to. It is saved atomically in the state
// directory, so a restarted node plugin knows what it must keep alive.
type stagedVolume struct {
	VolumeID    string            `json:"volumeId"`
	StagingPath string            `json:"stagingPath"`
	Path        string            `json:"path"`
	Context     map[string]string `json:"context"`
	ReadOnly    bool              `json:"readOnly"`
	PID         int               `json:"pid"`
	Targets     map[string]bool   `json:"targets"` // target path → read-only
}

func (n *nodeServer) statePath(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return filepath.Join(n.cfg.StateDir, hex.EncodeToString(sum[:12])+".json")
}

// save writes the record with temp file + fsync + rename.
func (n *nodeServer) save(v *stagedVolume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	p := n.statePath(v.VolumeID)
	tmp, err := os.CreateTemp(n.cfg.StateDir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("save node state: %w", err)
	}
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save node state for %s: %w", v.VolumeID, err)
	}
	return nil
}

func (n *nodeServer) forget(volumeID string) error {
	err := os.Remove(n.statePath(volumeID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// loadAll reads every saved record (at start-up).
func (n *nodeServer) loadAll() (map[string]*stagedVolume, error) {
	ents, err := os.ReadDir(n.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("read node state: %w", err)
	}
	out := map[string]*stagedVolume{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.cfg.StateDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read node state: %w", err)
		}
		var v stagedVolume
		if err := json.Unmarshal(b, &v); err != nil {
			n.log.Error(err, "ignoring unreadable node state file", "file", e.Name())
			continue
		}
		if v.Targets == nil {
			v.Targets = map[string]bool{}
		}
		out[v.VolumeID] = &v
	}
	return out, nil
}
