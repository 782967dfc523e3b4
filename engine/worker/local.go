package worker

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/engine/shortcircuit"
)

// localHandler serves short-circuit opens from the block store.
type localHandler struct{ w *Worker }

var _ shortcircuit.Handler = localHandler{}

func (h localHandler) OpenLocal(blockID, _ int64, promote bool, token []byte) (*os.File, int64, int64, string, func(), error) {
	if err := h.w.authorize(token, blockID, security.AccessRead); err != nil {
		return nil, 0, 0, "", nil, fmt.Errorf("open %w", err)
	}
	if promote {
		if _, err := h.w.store.Promote(blockID); err != nil {
			return nil, 0, 0, "", nil, err
		}
	}
	bh, err := h.w.store.OpenBlock(blockID)
	if err != nil {
		return nil, 0, 0, "", nil, err
	}
	h.w.metrics.cacheHits.Inc()
	h.w.metrics.bytesDomainSocket.Add(float64(bh.Length))
	return bh.File, bh.Offset, bh.Length, bh.Tier, bh.Release, nil
}

// socketAccess makes the domain socket usable by root, the worker's user
// and group gid only (mode 0660; gid 0 or -1: the worker's own group), and
// returns the matching peer check: the kernel enforces the mode on
// connect, SO_PEERCRED re-checks the connected process (a socket fd passed
// on to another process keeps its creator's credentials).
func socketAccess(path string, gid int) (shortcircuit.Options, error) {
	if gid <= 0 {
		gid = os.Getgid()
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return shortcircuit.Options{}, fmt.Errorf("chown domain socket %s to group %d: %w", path, gid, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return shortcircuit.Options{}, fmt.Errorf("chmod domain socket %s: %w", path, err)
	}
	uid := os.Getuid()
	return shortcircuit.Options{Allow: func(c *unix.Ucred) error {
		if c.Uid == 0 || int(c.Uid) == uid || int(c.Gid) == gid || inGroup(c.Uid, gid) {
			return nil
		}
		return fmt.Errorf("uid %d gid %d is neither root, the worker's user, nor in group %d", c.Uid, c.Gid, gid)
	}}, nil
}

// inGroup reports whether user uid lists gid among its supplementary groups.
func inGroup(uid uint32, gid int) bool {
	u, err := user.LookupId(strconv.Itoa(int(uid)))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, g := range gids {
		if g == strconv.Itoa(gid) {
			return true
		}
	}
	return false
}
