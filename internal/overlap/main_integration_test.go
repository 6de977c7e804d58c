//go:build integration

package overlap_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
)

const ns = "overlap"

var (
	cp  *controlplane.ControlPlane
	cli client.WithWatch
)

// TestMain starts one control plane for the package (the unit tests run
// too under the integration tag) and then checks, like the unit TestMain,
// that no goroutine is left: every Watch closes its own connections, and
// the client's end when the control plane stops, before the check.
func TestMain(m *testing.M) {
	code := controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(c *controlplane.ControlPlane) error {
		cp = c
		cfg, err := kubeclient.Configure(c.Config, kubeclient.Options{UserAgent: "overlap-test"})
		if err != nil {
			return err
		}
		scheme := runtime.NewScheme()
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		cli, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
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
