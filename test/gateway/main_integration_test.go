//go:build integration

package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/proc"
)

var (
	cp *controlplane.ControlPlane
	// binary is leasehold, built once for the package.
	binary string
	// kubeconfig is the control plane's admin kubeconfig, for the children.
	kubeconfig string
	scheme     = runtime.NewScheme()
	// admin reads and writes anything, uncached.
	admin client.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "leasehold-gateway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "leasehold")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := proc.Build(ctx, "../..", "./cmd/leasehold", binary, proc.RaceEnabled()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return controlplane.Run(m, controlplane.Options{}, func(c *controlplane.ControlPlane) error {
		cp = c
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kubeconfig, c.Kubeconfig(), 0o600); err != nil {
			return err
		}
		admin, err = client.New(c.Config, client.Options{Scheme: scheme})
		return err
	})
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
	if err := cp.CreateNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// gatewayProcess is one `leasehold gateway` replica.
type gatewayProcess struct {
	*proc.Process
	URL string
}

// startGateways starts n gateway processes writing to namespace ns and
// waits until each is ready. They are stopped (SIGTERM, then checked for
// a clean exit) when the test ends.
func startGateways(t *testing.T, ns string, n int, extra ...string) []*gatewayProcess {
	t.Helper()
	logs := t.TempDir()
	var gws []*gatewayProcess
	for i := range n {
		port, err := proc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"gateway",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--kubeconfig", kubeconfig,
			"--namespace", ns,
			"--identity", fmt.Sprintf("gw-%d", i),
			"--lease-duration", "5s",
		}, extra...)
		p, err := proc.Start(proc.Spec{Name: fmt.Sprintf("gw-%d", i), Path: binary, Args: args, LogDir: logs})
		if err != nil {
			t.Fatal(err)
		}
		gw := &gatewayProcess{Process: p, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		gws = append(gws, gw)
		t.Cleanup(func() {
			if err := p.Stop(20 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", p.Name, err, p.Tail(2000))
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, gw := range gws {
		if err := gw.WaitReady(ctx, gw.URL+"/readyz"); err != nil {
			t.Fatal(err)
		}
	}
	return gws
}

func urls(gws []*gatewayProcess) []string {
	var out []string
	for _, gw := range gws {
		out = append(out, gw.URL)
	}
	return out
}
