package orchestrator_test

import (
	"context"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/orchestrator"
)

// A replica: a manager whose cache covers the namespace, a Locker with
// the orchestrator's prefix and metrics namespace, and Setup. Every replica
// runs the same code; none is a leader for the work.
func ExampleSetup() {
	const namespace = "leasehold-system"
	identity := os.Getenv("POD_NAME") // required; never left empty
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	locker, err := lease.New(cs.CoordinationV1(), lease.Options{
		Namespace:        namespace,
		Identity:         identity,
		Prefix:           "ro-lock",
		MetricsNamespace: "orchestrator",
		Registerer:       metrics.Registry,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = orchestrator.Setup(mgr, orchestrator.Options{
		Namespace:  namespace,
		Identity:   identity,
		Locker:     locker,
		Registerer: metrics.Registry,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Close the Locker only once the manager has stopped: no reconcile
	// may still be deciding under a lock.
	err = mgr.Start(context.Background())
	_ = locker.Close()
	if err != nil {
		fmt.Println(err)
	}
}
