package master

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/journal"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Volume tokens (security/volume.go): the CSI node plugin asks for one per
// staged volume, its FUSE daemon acts with it, and checkScope keeps that
// daemon inside its volume's directory.

// readTokenSecret is the cluster's token secret (nil before the first
// leader mints it); every member reads it from its replicated store.
func (m *Master) readTokenSecret() ([]byte, error) {
	var secret []byte
	err := m.store.View(func(tx *bbolt.Tx) error {
		secret = bytes.Clone(tx.Bucket(journal.MetaBucket).Get(kTokenSecret))
		return nil
	})
	return secret, err
}

// IssueVolumeToken implements FileSystemMaster (node agents and admins:
// security.Cluster).
func (s *fsServer) IssueVolumeToken(ctx context.Context, req *apiv1.IssueVolumeTokenRequest) (*apiv1.IssueVolumeTokenResponse, error) {
	tok, expires, err := s.m.issueVolumeToken(ctx, req.GetPath())
	if err != nil {
		return nil, meta.ToStatus(err)
	}
	return &apiv1.IssueVolumeTokenResponse{Token: tok, ExpiresMs: expires.UnixMilli()}, nil
}

func (m *Master) issueVolumeToken(ctx context.Context, path string) (string, time.Time, error) {
	p, err := cleanPath("issue volume token", path)
	if err != nil {
		return "", time.Time{}, err
	}
	n, err := m.getOrLoad(ctx, p)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue volume token: %w", err)
	}
	if !n.inode.GetFolder() || p == "/" {
		return "", time.Time{}, fmt.Errorf("%w: issue volume token for %s: a volume is a directory below /", meta.ErrInvalidArgument, p)
	}
	expires := time.Now().Add(security.VolumeTokenLifetime)
	tok, err := m.volumes.Sign(p, expires)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue volume token for %s: %w", p, err)
	}
	return tok, expires, nil
}

// checkScope confines a request of a user scoped to a directory (a volume's
// FUSE daemon): every path inside scope, files named by id too, orphan
// sessions its own. Other FileSystemMaster operations (mounts, and any
// added later) are refused; other services' methods are limited by role.
func (m *Master) checkScope(scope, method string, req any) error {
	in := func(verb, p string) error {
		c, err := meta.CleanPath(p)
		if err != nil {
			return fmt.Errorf("%s: %w", verb, err)
		}
		if !meta.HasPrefix(c, scope) { // scope is never "/" (Sign refuses it)
			return fmt.Errorf("%s %s: %w: a volume's daemon acts only inside %s", verb, c, meta.ErrPermission, scope)
		}
		return nil
	}
	byID := func(verb string, id int64) error {
		n, err := m.nodeByID(id)
		if err != nil {
			return fmt.Errorf("%s: %w", verb, err)
		}
		return in(verb, n.path)
	}
	switch r := req.(type) {
	case *apiv1.GetStatusRequest:
		if r.GetFileId() != 0 {
			return byID("get status", r.GetFileId())
		}
		return in("get status", r.GetPath())
	case *apiv1.ListStatusRequest:
		return in("list", r.GetPath())
	case *apiv1.CreateDirectoryRequest:
		return in("create directory", r.GetPath())
	case *apiv1.CreateFileRequest:
		return in("create", r.GetPath())
	case *apiv1.CreateSymlinkRequest:
		return in("create symlink", r.GetPath())
	case *apiv1.CompleteFileRequest:
		return in("complete", r.GetPath())
	case *apiv1.FreeRequest:
		return in("free", r.GetPath())
	case *apiv1.DeleteRequest:
		r.OrphanSession = scopedSession(scope, r.GetOrphanSession())
		return in("delete", r.GetPath())
	case *apiv1.RenameRequest:
		r.OrphanSession = scopedSession(scope, r.GetOrphanSession())
		if err := in("rename", r.GetSrc()); err != nil {
			return err
		}
		return in("rename", r.GetDst())
	case *apiv1.SetAttributeRequest:
		if r.GetFileId() != 0 {
			return byID("set attributes", r.GetFileId())
		}
		return in("set attributes of", r.GetPath())
	case *apiv1.ReleaseOrphansRequest:
		r.Session = scopedSession(scope, r.GetSession())
		return nil
	case *apiv1.GetMountTableRequest:
		return nil // redacted: no credentials
	}
	if strings.HasPrefix(method, fsMethodPrefix) {
		return fmt.Errorf("%s: %w: not for a volume's daemon (scoped to %s)", method, meta.ErrPermission, scope)
	}
	return nil
}

// scopedSession keeps the orphan sessions of scoped callers apart: a
// volume's daemon names only its own volume's.
func scopedSession(scope, session string) string {
	if session == "" {
		return ""
	}
	return "scope:" + scope + ":" + session
}
