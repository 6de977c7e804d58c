//go:build !integration

package storm

import (
	"testing"

	"go.uber.org/goleak"
)

// Run starts a worker per in-flight signal; a worker or a retry wait left
// behind would show up here. Under the integration tag,
// main_integration_test.go owns TestMain.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
