package journal

import (
	"bytes"
	"io"

	"github.com/hashicorp/go-hclog"
	"k8s.io/klog/v2"
)

// hcLogger routes raft's hclog output into klog.
type hcLogger struct {
	hclog.Logger
}

func newHCLogger(logger klog.Logger) *hcLogger {
	return &hcLogger{hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: &klogWriter{logger: logger},
	})}
}

// klogWriter forwards each line hclog writes to klog: errors at verbosity 0,
// warnings at 1 (a single member warns on every start when it elects itself),
// the rest at 2, so raft's chatter stays out of default logs.
type klogWriter struct{ logger klog.Logger }

var _ io.Writer = (*klogWriter)(nil)

func (w *klogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		switch {
		case bytes.Contains(line, []byte("[ERROR]")) && peerDown(line):
			// A member that is down or restarting is retried every few
			// milliseconds; quorum info reports it, the log need not.
			w.logger.V(1).Info(s)
		case bytes.Contains(line, []byte("[ERROR]")):
			w.logger.Info(s)
		case bytes.Contains(line, []byte("[WARN]")):
			w.logger.V(1).Info(s)
		default:
			w.logger.V(2).Info(s)
		}
	}
	return len(p), nil
}

// peerDown recognizes raft's errors about reaching another member.
func peerDown(line []byte) bool {
	for _, m := range [][]byte{[]byte("failed to heartbeat to"), []byte("failed to appendEntries to"),
		[]byte("failed to make requestVote RPC"), []byte("failed to decode incoming command")} {
		if bytes.Contains(line, m) {
			return true
		}
	}
	return false
}
