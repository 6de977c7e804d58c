//go:build integration

package storm

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
)

// rrNamespace is where the integration tests write RemediationRequests.
const rrNamespace = "leasehold-system"

var (
	cp *controlplane.ControlPlane
	// admin writes RemediationRequests the way a gateway would.
	admin client.Client
)

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks, like the unit TestMain,
// that no goroutine is left.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{rrNamespace}}, func(c *controlplane.ControlPlane) error {
		cp = c
		scheme := runtime.NewScheme()
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		var err error
		admin, err = client.New(c.Config, client.Options{Scheme: scheme})
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
