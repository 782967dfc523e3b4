package csi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// StorageClass parameters.
const (
	paramPath        = "path"        // bind an existing namespace path
	paramUFS         = "ufs"         // mount this UFS URI at a new path
	paramUFSOption   = "ufsOption."  // prefix: UFS mount properties
	paramReadOnly    = "readOnly"    // mount the UFS read-only
	paramWriteType   = "writeType"   // FUSE write type for the volume
	paramReadType    = "readType"    // FUSE read type for the volume
	paramReplication = "replication" // alluxio.user.file.replication.durable
	paramOnDelete    = "onDelete"    // delete (default for new directories) or retain
	// Keys the external-provisioner adds with --extra-create-metadata.
	provisionerPrefix = "csi.storage.k8s.io/"
)

// Volume context keys passed to the node (PV volumeAttributes).
const (
	ctxPath        = "path"
	ctxWriteType   = "writeType"
	ctxReadType    = "readType"
	ctxReplication = "replication"
	ctxType        = "type" // "domain-socket" for the inline socket volume
)

// volumeParams is a validated parameter set.
type volumeParams struct {
	// pvcNamespace owns a new directory volume (empty: no PVC namespace
	// given, e.g. csi-sanity).
	pvcNamespace string
	path         string
	ufsURI       string
	ufsProps     map[string]string
	readOnly     bool
	retain       bool
	retainSet    bool
	nodeParams   map[string]string // what the node needs: write/read type, replication
}

func parseParams(p map[string]string, allowedUFS []string) (*volumeParams, error) {
	vp := &volumeParams{ufsProps: map[string]string{}, nodeParams: map[string]string{}}
	for k, v := range p {
		switch {
		case k == paramPath:
			clean, err := meta.CleanPath(v)
			if err != nil {
				return nil, fmt.Errorf("parameter %s: %w", k, err)
			}
			vp.path = clean
		case k == paramUFS:
			if err := checkUFS(v, allowedUFS); err != nil {
				return nil, err
			}
			vp.ufsURI = v
		case strings.HasPrefix(k, paramUFSOption):
			vp.ufsProps[strings.TrimPrefix(k, paramUFSOption)] = v
		case k == paramReadOnly:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%w: parameter %s=%q: use true or false", meta.ErrInvalidArgument, k, v)
			}
			vp.readOnly = b
		case k == paramWriteType:
			if _, err := meta.ParseWriteType(v); err != nil {
				return nil, fmt.Errorf("parameter %s: %w", k, err)
			}
			vp.nodeParams[ctxWriteType] = strings.ToUpper(v)
		case k == paramReadType:
			if _, err := meta.ParseReadType(v); err != nil {
				return nil, fmt.Errorf("parameter %s: %w", k, err)
			}
			vp.nodeParams[ctxReadType] = strings.ToUpper(v)
		case k == paramReplication:
			if err := checkReplication(v); err != nil {
				return nil, fmt.Errorf("parameter %s: %w", k, err)
			}
			vp.nodeParams[ctxReplication] = v
		case k == paramOnDelete:
			switch v {
			case "delete":
				vp.retain = false
			case "retain":
				vp.retain = true
			default:
				return nil, fmt.Errorf("%w: parameter %s=%q: use delete or retain", meta.ErrInvalidArgument, k, v)
			}
			vp.retainSet = true
		case k == provisionerPrefix+"pvc/namespace":
			vp.pvcNamespace = v
		case strings.HasPrefix(k, provisionerPrefix):
		default:
			return nil, fmt.Errorf("%w: unknown StorageClass parameter %q (known: path, ufs, ufsOption.*, readOnly, writeType, readType, replication, onDelete)", meta.ErrInvalidArgument, k)
		}
	}
	if vp.path != "" && vp.ufsURI != "" {
		return nil, fmt.Errorf("%w: parameters path and ufs exclude each other", meta.ErrInvalidArgument)
	}
	if vp.path != "" && vp.retainSet && !vp.retain {
		return nil, fmt.Errorf("%w: onDelete=delete is refused for a bound path (%s): Alcove never deletes data it did not create", meta.ErrInvalidArgument, vp.path)
	}
	return vp, nil
}

// maxReplication bounds the copies a volume asks for: more than a cluster's
// nodes only slows every write.
const maxReplication = 64

// checkReplication accepts a durable replication from a StorageClass or a
// volume context: it goes on the FUSE daemon's command line.
func checkReplication(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxReplication {
		return fmt.Errorf("%w: replication %q: use an integer from 1 to %d", meta.ErrInvalidArgument, v, maxReplication)
	}
	return nil
}

// checkUFS accepts a UFS URI only under an allowed prefix; local paths
// must be listed explicitly, so a StorageClass cannot expose the node's
// or master's own filesystem. Both sides are compared parsed, by scheme,
// host and whole path components — as the master will mount the URI — so
// a prefix such as "s3:" or "file:///srv/data" allows neither every bucket
// nor file:///srv/database.
func checkUFS(uri string, allowed []string) error {
	u, p, err := parseUFSPrefix(uri)
	if err != nil {
		return fmt.Errorf("parameter ufs: %w", err)
	}
	for _, a := range allowed {
		r, rp, err := parseUFSPrefix(a)
		if err == nil && r.Scheme == u.Scheme && r.Host == u.Host && meta.HasPrefix(p, rp) {
			return nil
		}
	}
	if u.Scheme != "file" && len(allowed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: parameter ufs=%q is outside the UFS prefixes this driver allows (%v; set --allowed-ufs)", meta.ErrPermission, uri, allowed)
}

// secretAliases map the key names of a typical S3 Secret (as MinIO and AWS
// tooling write them) to mount options.
var secretAliases = map[string]string{
	"AWS_ACCESS_KEY_ID":     "s3a.accessKeyId",
	"AWS_SECRET_ACCESS_KEY": "s3a.secretKey",
	"AWS_SESSION_TOKEN":     "s3a.sessionToken",
	"accessKeyId":           "s3a.accessKeyId",
	"secretKey":             "s3a.secretKey",
}

// secretOptions turns CSI secrets (csi.storage.k8s.io/provisioner-secret-*
// for CreateVolume, node-stage-secret-* for NodeStageVolume) into UFS mount
// options: a key is a mount option name (s3a.accessKeyId, s3a.secretKey, or
// any other option) or one of secretAliases. They go to the master with
// the mount, never into a volume record, a volume context or a log line.
func secretOptions(secrets map[string]string) map[string]string {
	if len(secrets) == 0 {
		return nil
	}
	out := make(map[string]string, len(secrets))
	for k, v := range secrets {
		if alias, ok := secretAliases[k]; ok {
			k = alias
		}
		out[k] = v
	}
	return out
}

// ufsMountParams reads a UFS mount from a static PV's volume attributes
// (ufs, ufsOption.*, readOnly): the node mounts it with node-stage secrets.
func ufsMountParams(vctx map[string]string, allowedUFS []string) (uri string, props map[string]string, readOnly bool, err error) {
	uri = vctx[paramUFS]
	if err := checkUFS(uri, allowedUFS); err != nil {
		return "", nil, false, err
	}
	props = map[string]string{}
	for k, v := range vctx {
		if strings.HasPrefix(k, paramUFSOption) {
			props[strings.TrimPrefix(k, paramUFSOption)] = v
		}
	}
	if v, ok := vctx[paramReadOnly]; ok {
		if readOnly, err = strconv.ParseBool(v); err != nil {
			return "", nil, false, fmt.Errorf("%w: volume attribute %s=%q: use true or false", meta.ErrInvalidArgument, paramReadOnly, v)
		}
	}
	return uri, props, readOnly, nil
}

// parseUFSPrefix parses a UFS URI the way the master mounts it (surrounding
// space trimmed) and returns it with its clean path.
func parseUFSPrefix(uri string) (*url.URL, string, error) {
	u, err := ufs.ParseURI(strings.TrimSpace(uri))
	if err != nil {
		return nil, "", err
	}
	p, err := meta.CleanPath(u.Path)
	if err != nil {
		return nil, "", fmt.Errorf("UFS URI %q: %w", uri, err)
	}
	return u, p, nil
}
