package csi

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// one started by the code under test has an owner that stops and joins it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
