package backoff_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Retry is called from goroutines in these tests; a wait that is not released on
// cancellation would show up here as a leaked goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
