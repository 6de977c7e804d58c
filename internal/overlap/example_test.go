package overlap_test

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
)

// Watch the executions of a namespace around a test, then check that no
// target ever had two active at once and that work went on after a fault.
func ExampleStart() {
	ctx := context.Background()
	var cfg *rest.Config // an API server's config, passed through kubeclient.Configure
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	cli, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	w, err := overlap.Start(ctx, cli, "demo", "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} }, overlap.Executions)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	faultAt := time.Now()
	// ... inject a fault, let the system run, list what it wrote, and wait
	// until w.CaughtUp(listed) ...

	r := w.Result(nil)
	if r.MaxActiveAny > 1 || len(r.Gaps) > 0 {
		fmt.Println(r.Violations, r.Gaps)
	}
	fmt.Println(len(w.AddedAfter(faultAt)), "executions started after the fault")
}

// Watch the executions of a namespace in etcd itself, so that a restart of
// the API server during the test leaves no gap.
func ExampleStartEtcd() {
	ctx := context.Background()
	etcdURL := "http://127.0.0.1:2379" // controlplane.ControlPlane.EtcdURL()
	w, err := overlap.StartEtcd(ctx, etcdURL,
		overlap.EtcdKey(v1alpha1.GroupVersion.Group, "workflowexecutions", "demo"),
		"executions", overlap.DecodeExecution, overlap.Executions)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	// ... restart the API server, let the system run, list what it wrote,
	// and wait until w.CaughtUp(listed) ...

	r := w.Result(nil)
	if r.MaxActiveAny > 1 || len(r.Gaps) > 0 {
		fmt.Println(r.Violations, r.Gaps)
	}
}
