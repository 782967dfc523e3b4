package worker

import (
	"context"
	"testing"
	"time"
)

func TestGateDrain(t *testing.T) {
	var g gate
	for range 2 {
		if !g.enter() {
			t.Fatal("a fresh gate refused work")
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if left := g.drain(short); left != 2 {
		t.Fatalf("drain gave up with %d running, want 2", left)
	}
	if g.enter() {
		t.Fatal("a draining gate admitted new work")
	}
	done := make(chan int)
	go func() { done <- g.drain(context.Background()) }()
	g.leave()
	select {
	case left := <-done:
		t.Fatalf("drain returned (%d left) with work still running", left)
	case <-time.After(20 * time.Millisecond):
	}
	g.leave()
	if left := <-done; left != 0 {
		t.Fatalf("drain returned %d left after all work finished", left)
	}
	if left := g.drain(context.Background()); left != 0 {
		t.Fatalf("an idle gate reported %d running", left)
	}
}
