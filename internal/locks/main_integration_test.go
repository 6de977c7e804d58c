//go:build integration

package locks_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/controlplane"
)

// admin plays everyone who is not a Locker: the operator running
// `leasehold locks`, and a holder that crashed.
var admin kubernetes.Interface

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks, like the unit TestMain,
// that no goroutine is left.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		var err error
		admin, err = kubernetes.NewForConfig(c.Config)
		return err
	})
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after all tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
