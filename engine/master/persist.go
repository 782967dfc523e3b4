package master

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// Backoff of a file whose persist failed (the UFS down or throttling): the
// command is not re-issued before 500 ms, doubling per failure up to 10 s,
// with full jitter so files do not retry in lockstep.
const (
	persistBackoffBase = 500 * time.Millisecond
	persistBackoffMax  = 10 * time.Second
)

// persistTracker remembers which files were handed to a worker to persist,
// so a command is not re-issued until it fails or the retry interval
// passes, and which failed, so they are retried with backoff.
type persistTracker struct {
	retry  time.Duration
	mu     sync.Mutex
	issued map[int64]issue
	failed map[int64]failure
}

type issue struct {
	worker int64
	at     time.Time
}

type failure struct {
	count     int
	notBefore time.Time
}

func newPersistTracker(retry time.Duration) *persistTracker {
	return &persistTracker{retry: retry, issued: map[int64]issue{}, failed: map[int64]failure{}}
}

// claim reports whether file may be handed to worker now, and records it.
func (t *persistTracker) claim(file, worker int64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if is, ok := t.issued[file]; ok && now.Sub(is.at) < t.retry {
		return false
	}
	if f, ok := t.failed[file]; ok && now.Before(f.notBefore) {
		return false
	}
	t.issued[file] = issue{worker: worker, at: now}
	return true
}

// done forgets a file's command: it finished.
func (t *persistTracker) done(file int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.issued, file)
	delete(t.failed, file)
}

// fail records a failed persist; the file is retried after a backoff.
func (t *persistTracker) fail(file int64, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.issued, file)
	f := t.failed[file]
	f.count++
	ceiling := min(persistBackoffMax, persistBackoffBase<<min(f.count-1, 16))
	wait := ceiling/2 + rand.N(ceiling/2+1)
	f.notBefore = now.Add(wait)
	t.failed[file] = f
	return wait
}

// forget drops commands of removed files.
func (t *persistTracker) forget(files []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range files {
		delete(t.issued, f)
		delete(t.failed, f)
	}
}

// persistTempPrefix names the temporary object a worker persists a file to,
// at the root of the file's mount; it is a ufs temporary, so listings skip it.
const persistTempPrefix = ufs.TempPrefix + "-persist-"

// persistTempURI is a fresh temporary object for persisting file id.
func persistTempURI(mnt *apiv1.MountPointInfo, id int64) string {
	return ufs.JoinURI(mnt.GetUfsUri(), fmt.Sprintf("%s%d-%016x", persistTempPrefix, id, rand.Uint64()))
}

// checkPersistTemp accepts only a temporary object the master could have
// issued for file id in mnt: a worker's report never makes the master move
// or delete anything else.
func checkPersistTemp(mnt *apiv1.MountPointInfo, id int64, uri string) error {
	prefix := ufs.JoinURI(mnt.GetUfsUri(), fmt.Sprintf("%s%d-", persistTempPrefix, id))
	nonce, ok := strings.CutPrefix(uri, prefix)
	if ok && len(nonce) == 16 {
		if _, err := strconv.ParseUint(nonce, 16, 64); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: persist of file %d: %q is not a temporary object of mount %s", meta.ErrInvalidArgument, id, uri, mnt.GetAlcovePath())
}

// commitPersist moves a worker's completed temporary object into the
// file's place and records the file PERSISTED, or removes the object when
// the file was deleted (or persisted by another worker) meanwhile. It holds
// the file's lock, so no delete or rename of the file or its directories
// interleaves (see inodeLocks).
func (m *Master) commitPersist(ctx context.Context, id int64, tmpURI string) error {
	n, unlock, err := m.lockFile(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	logger := klog.FromContext(ctx).WithValues("fileID", id)
	if n == nil || n.inode.PersistenceState == apiv1.PersistenceState_PERSISTED || !n.inode.Completed {
		mnt, err := m.mountOfTemp(id, tmpURI)
		if err != nil {
			return err
		}
		logger.V(2).Info("Persisted file is gone or already persisted; dropping the worker's copy", "temp", tmpURI)
		return m.removeTemp(ctx, mnt, tmpURI)
	}
	if err := checkPersistTemp(n.mount, id, tmpURI); err != nil {
		return err
	}
	if err := writable(n); err != nil {
		_ = m.removeTemp(ctx, n.mount, tmpURI)
		return fmt.Errorf("commit persist: %w", err)
	}
	fs, tmp, err := ufs.Resolve(tmpURI, m.mountProps(n.mount))
	if err != nil {
		return fmt.Errorf("commit persist of %s: %w", n.path, err)
	}
	_, dst, err := m.ufsOf(n.mount, n.path)
	if err != nil {
		return err
	}
	if err := fs.Rename(ctx, tmp, dst); err != nil {
		return fmt.Errorf("commit persist of %s: move %s into place: %w", n.path, tmp, err)
	}
	var mtime int64
	var fingerprint string
	if st, err := fs.Stat(ctx, dst); err == nil {
		mtime, fingerprint = st.ModTime.UnixMilli(), st.Fingerprint
	}
	_, err = m.applyCall(ctx, &apiv1.JournalEntry{Entry: &apiv1.JournalEntry_SetPersistence{SetPersistence: &apiv1.SetPersistenceEntry{
		Id: id, State: apiv1.PersistenceState_PERSISTED, UfsMtimeMs: mtime, UfsFingerprint: fingerprint,
	}}})
	if err != nil {
		return fmt.Errorf("commit persist of %s: %w", n.path, err)
	}
	logger.V(2).Info("File persisted", "path", n.path)
	return nil
}

// mountOfTemp finds the mount a temporary object of file id belongs to.
func (m *Master) mountOfTemp(id int64, tmpURI string) (*apiv1.MountPointInfo, error) {
	all, err := m.mountTable()
	if err != nil {
		return nil, err
	}
	for _, mnt := range all {
		if checkPersistTemp(mnt, id, tmpURI) == nil {
			return mnt, nil
		}
	}
	return nil, fmt.Errorf("%w: persist of file %d: %q is not a temporary object of any mount", meta.ErrInvalidArgument, id, tmpURI)
}

func (m *Master) removeTemp(ctx context.Context, mnt *apiv1.MountPointInfo, tmpURI string) error {
	fs, tmp, err := ufs.Resolve(tmpURI, m.mountProps(mnt))
	if err != nil {
		return err
	}
	if err := fs.Delete(ctx, tmp, false); err != nil {
		return fmt.Errorf("remove persist temporary %s: %w", tmp, err)
	}
	return nil
}

// reset forgets every command (a new leadership term).
func (t *persistTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.issued)
}
