//go:build integration

package orchestrator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
	osproc "github.com/leasehold/leasehold/internal/proc"
)

var (
	// kubeconfigPath is the control plane's kubeconfig, written for the
	// children.
	kubeconfigPath string
	// binaryPath is ./cmd/leasehold, built once per run.
	binaryPath string
	// cli and clientset are the test's own administrator clients.
	cli       client.WithWatch
	clientset kubernetes.Interface
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run exists so that deferred cleanup runs before os.Exit.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasehold-orchestrator-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binaryPath = filepath.Join(dir, "leasehold")
	if err := osproc.Build(context.Background(), "../..", "./cmd/leasehold", binaryPath, osproc.RaceEnabled()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return controlplane.Run(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) error {
		kubeconfigPath = filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kubeconfigPath, cp.Kubeconfig(), 0o600); err != nil {
			return err
		}
		scheme := runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return err
		}
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		var err error
		if clientset, err = kubernetes.NewForConfig(cp.Config); err != nil {
			return err
		}
		cli, err = client.NewWithWatch(cp.Config, client.Options{Scheme: scheme})
		return err
	})
}
