//go:build integration

package executor_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/leasehold/leasehold/internal/controlplane"
)

var cp *controlplane.ControlPlane

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks that no goroutine is left.
// The clients' connections end when the control plane stops, before the
// check.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		cp = c
		return nil
	})
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after all tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
