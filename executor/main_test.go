//go:build !integration

package executor_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Run starts watches and timers; one left behind after Run returns would
// show up here as a leaked goroutine. Under the integration tag,
// main_integration_test.go owns TestMain and runs the same check.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
