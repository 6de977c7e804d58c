//go:build !integration

package owner_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Under the integration tag, main_integration_test.go owns TestMain: it
// starts the control plane and runs the same goroutine-leak check. The
// check matters here: every lookup not in the cache runs in a goroutine of
// its own, which must end with its request.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
