package failover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/meta"
)

// The checked namespace: groups of two directory slots, /ns/g<G>/s0 and
// /ns/g<G>/s1. Operations (each one master RPC, journaled when it changes
// anything): create a slot (mkdir), delete it, rename one slot onto the other
// (no overwrite), get a slot's inode id. A slot's state is the id of the
// directory there (0 = absent); renames move ids within a group, so the
// history is checked per group.

type opKind int

const (
	opCreate opKind = iota
	opDelete
	opRename
	opGet
)

func (k opKind) String() string { return [...]string{"create", "delete", "rename", "get"}[k] }

type nsInput struct {
	kind  opKind
	group int
	slot  int // the slot acted on (rename: the source; the other slot is the destination)
}

type outcome int

const (
	outOK outcome = iota
	outNotFound
	outExists
	outUnknown // the call failed or timed out: it may or may not have taken effect
)

type nsOutput struct {
	res outcome
	id  int64 // create and get: the directory's inode id
}

// slots is one group's state: inode id per slot; 0 absent, -1 present with
// an id nobody saw (a create whose outcome is unknown).
type slots [2]int64

func stepNS(st slots, in nsInput, out nsOutput) []slots {
	a, b := in.slot, 1-in.slot
	if out.res == outUnknown {
		next := []slots{st}
		switch in.kind {
		case opCreate:
			if st[a] == 0 {
				s := st
				s[a] = -1
				next = append(next, s)
			}
		case opDelete:
			if st[a] != 0 {
				s := st
				s[a] = 0
				next = append(next, s)
			}
		case opRename:
			if st[a] != 0 && st[b] == 0 {
				s := st
				s[a], s[b] = 0, st[a]
				next = append(next, s)
			}
		}
		return next
	}
	switch in.kind {
	case opCreate:
		switch {
		case out.res == outOK && st[a] == 0:
			s := st
			s[a] = out.id
			return []slots{s}
		case out.res == outExists && st[a] != 0:
			return []slots{st}
		}
	case opDelete:
		switch {
		case out.res == outOK && st[a] != 0:
			s := st
			s[a] = 0
			return []slots{s}
		case out.res == outNotFound && st[a] == 0:
			return []slots{st}
		}
	case opRename:
		switch {
		case out.res == outOK && st[a] != 0 && st[b] == 0:
			s := st
			s[a], s[b] = 0, st[a]
			return []slots{s}
		case out.res == outNotFound && st[a] == 0:
			return []slots{st}
		case out.res == outExists && st[a] != 0 && st[b] != 0:
			return []slots{st}
		}
	case opGet:
		switch {
		case out.res == outOK && st[a] == out.id:
			return []slots{st}
		case out.res == outOK && st[a] == -1:
			s := st
			s[a] = out.id
			return []slots{s}
		case out.res == outNotFound && st[a] == 0:
			return []slots{st}
		}
	}
	return nil
}

var nsModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byGroup := map[int][]porcupine.Operation{}
		for _, op := range history {
			g := op.Input.(nsInput).group
			byGroup[g] = append(byGroup[g], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byGroup {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{slots{}} },
	Step: func(state, input, output any) []any {
		var out []any
		for _, s := range stepNS(state.(slots), input.(nsInput), output.(nsOutput)) {
			out = append(out, s)
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(nsInput), output.(nsOutput)
		res := [...]string{"ok", "not found", "exists", "unknown"}[out.res]
		if out.id != 0 {
			res = fmt.Sprintf("id %d", out.id)
		}
		return fmt.Sprintf("%s g%d/s%d -> %s", in.kind, in.group, in.slot, res)
	},
	DescribeState: func(state any) string {
		s := state.(slots)
		return fmt.Sprintf("[%d %d]", s[0], s[1])
	},
}

func slotPath(group, slot int) string { return fmt.Sprintf("/ns/g%d/s%d", group, slot) }

// history records operations; safe for concurrent use.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	bad   []string // outcomes the model has no name for
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(clientID int, in nsInput, call int64, out nsOutput, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if out.res == outUnknown {
		ret = 1 << 62 // it may take effect any time after it was called
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret})
}

func (h *history) unexpected(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bad = append(h.bad, fmt.Sprintf(format, args...))
}

// classify maps a client error to an outcome.
func classify(err error) outcome {
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, meta.ErrNotFound):
		return outNotFound
	case errors.Is(err, meta.ErrAlreadyExists):
		return outExists
	}
	return outUnknown
}

// doOp runs one namespace operation and records it.
func doOp(ctx context.Context, c *client.Client, h *history, clientID int, in nsInput) {
	call := h.now()
	var out nsOutput
	var err error
	p := slotPath(in.group, in.slot)
	switch in.kind {
	case opCreate:
		var fi *apiv1.FileInfo
		fi, err = c.Mkdir(ctx, p, false, false, 0o755)
		out.id = fi.GetFileId()
	case opDelete:
		err = c.Delete(ctx, p, false, false)
	case opRename:
		err = c.Rename(ctx, p, slotPath(in.group, 1-in.slot), false)
	case opGet:
		var fi *apiv1.FileInfo
		fi, err = c.GetStatus(ctx, p)
		out.id = fi.GetFileId()
	}
	out.res = classify(err)
	if out.res == outUnknown && ctx.Err() == nil {
		// Not cut short by the end of the run: the client gave up.
		h.unexpected("%s %s: %v", in.kind, p, err)
	}
	h.add(clientID, in, call, out, h.now())
}

// runNamespaceClient issues random operations until ctx ends.
func runNamespaceClient(ctx context.Context, c *client.Client, h *history, clientID, groups int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(clientID)))
	for ctx.Err() == nil {
		in := nsInput{group: r.IntN(groups), slot: r.IntN(2)}
		switch x := r.IntN(100); {
		case x < 30:
			in.kind = opCreate
		case x < 50:
			in.kind = opDelete
		case x < 65:
			in.kind = opRename
		default:
			in.kind = opGet
		}
		doOp(ctx, c, h, clientID, in)
	}
}

// checkHistory runs porcupine; on a violation it writes a visualization.
func checkHistory(t *testing.T, h *history, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	model := nsModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	if res == porcupine.Illegal {
		f := filepath.Join(os.TempDir(), fmt.Sprintf("alcove-linearizability-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(model, info, f); err == nil {
			t.Logf("history visualization: %s", f)
		}
		logViolation(t, info, ops)
	}
	return res
}

// logViolation prints, for each partition that cannot be linearized, the
// end of its longest partial linearization and the first operations (by
// call time) that no linearization got to.
func logViolation(t *testing.T, info porcupine.LinearizationInfo, ops []porcupine.Operation) {
	t.Helper()
	describe := func(tag string, op porcupine.Operation) {
		ret := "∞"
		if op.Return < 1<<62 {
			ret = fmt.Sprintf("%.3f", float64(op.Return)/1e9)
		}
		t.Logf("  %s c%d [%.3f, %s] %s", tag, op.ClientId, float64(op.Call)/1e9, ret, nsModel.DescribeOperation(op.Input, op.Output))
	}
	for _, partials := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, lin := range partials {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
		if len(longest) == 0 {
			continue
		}
		group := longest[0].Input.(nsInput).group
		done := map[[2]int64]bool{}
		for _, op := range longest {
			done[[2]int64{int64(op.ClientId), op.Call}] = true
		}
		var stuck []porcupine.Operation
		total := 0
		for _, op := range ops {
			if op.Input.(nsInput).group != group {
				continue
			}
			total++
			if !done[[2]int64{int64(op.ClientId), op.Call}] {
				stuck = append(stuck, op)
			}
		}
		if len(stuck) == 0 {
			continue
		}
		slices.SortFunc(stuck, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		t.Logf("group g%d: %d of %d operations linearize; the last of them and the first that do not:", group, len(longest), total)
		for _, op := range longest[max(0, len(longest)-6):] {
			describe("done ", op)
		}
		for _, op := range stuck[:min(6, len(stuck))] {
			describe("stuck", op)
		}
	}
}
