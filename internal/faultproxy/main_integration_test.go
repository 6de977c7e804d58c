//go:build integration

package faultproxy_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/leasehold/leasehold/internal/controlplane"
)

const ns = "faultproxy"

var cp *controlplane.ControlPlane

// TestMain starts one control plane for the package (the unit tests run too
// under the integration tag) and then checks, like the unit TestMain, that
// no goroutine is left: every test closes its proxy, which resets the
// connections of the clients that went through it.
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
