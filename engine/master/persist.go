package master

import (
	"sync"
	"time"
)

// persistTracker remembers which files were handed to a worker to persist,
// so a command is not re-issued until it fails or the retry interval passes.
type persistTracker struct {
	retry  time.Duration
	mu     sync.Mutex
	issued map[int64]issue
}

type issue struct {
	worker int64
	at     time.Time
}

func newPersistTracker(retry time.Duration) *persistTracker {
	return &persistTracker{retry: retry, issued: map[int64]issue{}}
}

// claim reports whether file may be handed to worker now, and records it.
func (t *persistTracker) claim(file, worker int64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if is, ok := t.issued[file]; ok && now.Sub(is.at) < t.retry {
		return false
	}
	t.issued[file] = issue{worker: worker, at: now}
	return true
}

// done forgets a file's command (it finished, or failed and may be retried).
func (t *persistTracker) done(file int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.issued, file)
}

// forget drops commands of removed files.
func (t *persistTracker) forget(files []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range files {
		delete(t.issued, f)
	}
}
