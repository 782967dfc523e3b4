package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// recordDir keeps one JSON record per provisioned volume, in the Alcove
// namespace itself (written CACHE_THROUGH, so the UFS holds it too): the
// controller is stateless and any replica sees the same volumes.
const recordDir = "/.alcove-csi/volumes"

// Volume kinds.
const (
	kindDir  = "dir"  // a directory CreateVolume made under the volume root
	kindPath = "path" // an existing namespace path bound by the StorageClass
	kindUFS  = "ufs"  // a UFS mounted at a new path
)

// volumeRecord is what CreateVolume decided, so that a repeated call is
// answered identically and DeleteVolume knows what to undo.
type volumeRecord struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Path          string            `json:"path"`
	UFS           string            `json:"ufs,omitempty"`
	CapacityBytes int64             `json:"capacityBytes"`
	Retain        bool              `json:"retain"`
	Context       map[string]string `json:"context"`
}

// validName checks that a CSI volume name can be one path component.
func validName(name string) error {
	if err := meta.ValidName(name); err != nil {
		return fmt.Errorf("volume name: %w", err)
	}
	return nil
}

func (d *Driver) loadRecord(ctx context.Context, id string) (*volumeRecord, error) {
	if err := validName(id); err != nil {
		return nil, err
	}
	r, err := d.ns.OpenFile(ctx, meta.Join(recordDir, id), apiv1.ReadType_CACHE)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read volume record %s: %w", id, err)
	}
	var rec volumeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("parse volume record %s: %w", id, err)
	}
	return &rec, nil
}

func (d *Driver) saveRecord(ctx context.Context, rec *volumeRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	w, err := d.ns.Create(ctx, meta.Join(recordDir, rec.ID), client.WriteOptions{WriteType: apiv1.WriteType_CACHE_THROUGH, Recursive: true, Overwrite: true})
	if err != nil {
		return fmt.Errorf("save volume record %s: %w", rec.ID, err)
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return fmt.Errorf("save volume record %s: %w", rec.ID, err)
	}
	return w.Close()
}

func (d *Driver) deleteRecord(ctx context.Context, id string) error {
	err := d.ns.Delete(ctx, meta.Join(recordDir, id), false, false)
	if errors.Is(err, meta.ErrNotFound) {
		return nil
	}
	return err
}

// listRecords returns every volume record, sorted by id.
func (d *Driver) listRecords(ctx context.Context) ([]*volumeRecord, error) {
	infos, err := d.ns.ListStatus(ctx, recordDir, false, false)
	if errors.Is(err, meta.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]*volumeRecord, 0, len(infos))
	for _, i := range infos {
		if i.GetFolder() || !i.GetCompleted() {
			continue
		}
		rec, err := d.loadRecord(ctx, i.GetName())
		if err != nil {
			if errors.Is(err, meta.ErrNotFound) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
