package fuse

import (
	"reflect"
	"testing"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/alcove-io/alcove/engine/vfs"
)

// notRequests are RawFileSystem methods go-fuse's server calls itself,
// never for a kernel request.
var notRequests = map[string]bool{"String": true, "SetDebug": true, "Init": true, "OnUnmount": true}

// TestRawGated calls every request method of RawFileSystem on a rawFS
// whose gate is frozen (as during a handover) and checks that each one
// parks at the gate and reaches go-fuse only after the gate opens. A new
// method that is not gated fails here.
func TestRawGated(t *testing.T) {
	rt := reflect.TypeOf((*gofuse.RawFileSystem)(nil)).Elem()
	for i := 0; i < rt.NumMethod(); i++ {
		m := rt.Method(i)
		if notRequests[m.Name] {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			r := newRawFS(gofuse.NewDefaultRawFileSystem(), vfs.NewMetrics(), nil)
			if !r.gate.freeze(time.Second) {
				t.Fatal("freeze")
			}
			args := make([]reflect.Value, m.Type.NumIn())
			for j := range args {
				args[j] = zeroArg(m.Type.In(j))
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				reflect.ValueOf(r).MethodByName(m.Name).Call(args)
			}()
			parked := waitParked(&r.gate, done)
			r.gate.thaw()
			<-done
			if !parked {
				t.Fatalf("%s was answered while the gate was frozen: it bypasses the handover gate", m.Name)
			}
		})
	}
}

// zeroArg is a usable zero argument: a new value for pointers, a nil
// cancel channel, zero otherwise.
func zeroArg(t reflect.Type) reflect.Value {
	if t.Kind() == reflect.Pointer {
		return reflect.New(t.Elem())
	}
	return reflect.Zero(t)
}

// waitParked waits until a request parks at g (true) or the call returns
// without parking (false).
func waitParked(g *gate, done <-chan struct{}) bool {
	go func() {
		<-done
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.parked == 0 {
		select {
		case <-done:
			return false
		default:
		}
		g.cond.Wait()
	}
	return true
}
