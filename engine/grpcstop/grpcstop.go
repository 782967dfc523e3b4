// Package grpcstop stops a gRPC server the one way every Alcove daemon does:
// gracefully (in-flight calls finish, streams end) for a bounded time, then
// hard.
package grpcstop

import (
	"time"

	"google.golang.org/grpc"
)

// Grace is how long Stop lets in-flight calls finish.
const Grace = 5 * time.Second

// Stop stops s gracefully within grace, then closes what is left, and
// returns once s has stopped.
func Stop(s *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.Stop() // GracefulStop returns too
		<-done
	}
}
