//go:build !integration

package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// server starts one per batch entry, one per shared token review, and one
// for Serve.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
