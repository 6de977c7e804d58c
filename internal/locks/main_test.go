//go:build !integration

package locks_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The sweep tests run Sweep in goroutines; one left blocked on its timer
// would show up here. Under the integration tag,
// main_integration_test.go owns TestMain.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
