//go:build integration

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	"github.com/leasehold/leasehold/internal/kubeclient"
	"github.com/leasehold/leasehold/internal/proc"
)

var (
	runs       = flag.Int("chaos.runs", 1, "runs of each scenario")
	reportPath = flag.String("chaos.report", "", "write the Markdown report of all runs to this file")
	reportCmd  = flag.String("chaos.command", "go test -tags integration ./test/chaos", "command named in the report's header")
)

var (
	// cp is the package's control plane; scenarios restart its API server
	// and etcd, so no other package shares it.
	cp *controlplane.ControlPlane
	// binaryPath is ./cmd/leasehold, built once per run, with the race
	// detector when the tests have it.
	binaryPath string
	// workDir holds the binary, kubeconfigs and per-run logs.
	workDir string
	// cli and clientset are the test's own administrator clients, never
	// routed through a fault proxy.
	cli       client.WithWatch
	clientset kubernetes.Interface
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

// run exists so that deferred cleanup runs before os.Exit.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasehold-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	workDir = dir
	defer os.RemoveAll(dir)
	binaryPath = filepath.Join(dir, "leasehold")
	if err := proc.Build(context.Background(), "../..", "./cmd/leasehold", binaryPath, proc.RaceEnabled()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return controlplane.Run(m, controlplane.Options{}, func(c *controlplane.ControlPlane) error {
		cp = c
		scheme := runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return err
		}
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		if err := coordinationv1.AddToScheme(scheme); err != nil {
			return err
		}
		cfg, err := kubeclient.Configure(c.Config, kubeclient.Options{UserAgent: "leasehold-chaos"})
		if err != nil {
			return err
		}
		if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
		cli, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		return err
	})
}
