//go:build !integration

package overlap

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every Watch
// started must be closed, and Close must wait for what it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
