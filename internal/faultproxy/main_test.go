//go:build !integration

package faultproxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Under the integration tag, main_integration_test.go owns TestMain: it
// starts the control plane and runs the same goroutine-leak check.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
