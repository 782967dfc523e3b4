package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"time"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// humanSize prints bytes as Alluxio does: 300.00MB.
func humanSize(n int64) string {
	units := []string{"B", "KB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.2f%s", f, units[i])
}

func modeString(info *apiv1.FileInfo) string {
	m := fs.FileMode(info.GetMode() & 0o777)
	if info.GetFolder() {
		m |= fs.ModeDir
	}
	return m.String()
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("01-02-2006 15:04:05:000")
}

func persistence(info *apiv1.FileInfo) string {
	if info.GetFolder() {
		if info.GetPersistenceState() == apiv1.PersistenceState_PERSISTED {
			return "PERSISTED"
		}
		return "NOT_PERSISTED"
	}
	return info.GetPersistenceState().String()
}

// fileJSON is the stable JSON shape of `stat -o json` and `ls -o json`.
type fileJSON struct {
	Path               string      `json:"path"`
	Name               string      `json:"name"`
	Folder             bool        `json:"folder"`
	Length             int64       `json:"length"`
	BlockSizeBytes     int64       `json:"blockSizeBytes"`
	Mode               string      `json:"mode"`
	Owner              string      `json:"owner"`
	Group              string      `json:"group"`
	LastModified       int64       `json:"lastModificationTimeMs"`
	Completed          bool        `json:"completed"`
	Persisted          bool        `json:"persisted"`
	PersistenceState   string      `json:"persistenceState"`
	Pinned             bool        `json:"pinned"`
	TTLMs              int64       `json:"ttlMs,omitempty"`
	TTLAction          string      `json:"ttlAction,omitempty"`
	InAlcovePercentage int32       `json:"inAlcovePercentage"`
	UfsPath            string      `json:"ufsPath"`
	MountPoint         bool        `json:"mountPoint"`
	FileID             int64       `json:"fileId"`
	Blocks             []blockJSON `json:"blocks"`
}

type blockJSON struct {
	ID        int64          `json:"id"`
	Offset    int64          `json:"offset"`
	Length    int64          `json:"length"`
	Locations []locationJSON `json:"locations"`
}

type locationJSON struct {
	WorkerID      int64  `json:"workerId"`
	WorkerAddress string `json:"workerAddress"`
	Node          string `json:"node"`
	Tier          string `json:"tier"`
}

func toJSON(info *apiv1.FileInfo, withBlocks bool) fileJSON {
	out := fileJSON{
		Path: info.GetPath(), Name: info.GetName(), Folder: info.GetFolder(), Length: info.GetLength(),
		BlockSizeBytes: info.GetBlockSizeBytes(), Mode: modeString(info), Owner: info.GetOwner(), Group: info.GetGroup(),
		LastModified: info.GetLastModificationTimeMs(), Completed: info.GetCompleted(),
		Persisted:        info.GetPersistenceState() == apiv1.PersistenceState_PERSISTED,
		PersistenceState: persistence(info), Pinned: info.GetPinned(), TTLMs: info.GetTtlMs(),
		InAlcovePercentage: info.GetInAlcovePercentage(), UfsPath: info.GetUfsPath(), MountPoint: info.GetMountPoint(),
		FileID: info.GetFileId(), Blocks: []blockJSON{},
	}
	if info.GetTtlMs() > 0 {
		out.TTLAction = info.GetTtlAction().String()
	}
	if withBlocks {
		for _, fbi := range info.GetFileBlockInfos() {
			b := blockJSON{ID: fbi.GetBlockInfo().GetBlockId(), Offset: fbi.GetOffset(), Length: fbi.GetBlockInfo().GetLength(), Locations: []locationJSON{}}
			for _, l := range fbi.GetBlockInfo().GetLocations() {
				b.Locations = append(b.Locations, locationJSON{WorkerID: l.GetWorkerId(), WorkerAddress: l.GetWorkerAddress(), Node: l.GetNode(), Tier: l.GetTier()})
			}
			out.Blocks = append(out.Blocks, b)
		}
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
