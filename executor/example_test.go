package executor_test

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/executor"
)

// The Simulator as a reconciler: each call makes at most one transition and
// says when the next one is due.
func ExampleSimulator_Reconcile() {
	ctx := context.Background()
	clock := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	wfe := &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "wfe-1", Namespace: "leasehold-system"},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"},
			RemediationRequestRef: v1alpha1.ObjectReference{Name: "rr-1"},
			Sequence:              1,
		},
	}
	cli := fake.NewClientBuilder().
		WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.WorkflowExecution{}).
		WithObjects(wfe).
		Build()
	sim, err := executor.New(cli, executor.Options{Namespace: "leasehold-system", Duration: time.Second, Clock: clock})
	if err != nil {
		panic(err)
	}
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wfe)}

	for range 2 {
		res, err := sim.Reconcile(ctx, req)
		if err != nil {
			panic(err)
		}
		if err := cli.Get(ctx, req.NamespacedName, wfe); err != nil {
			panic(err)
		}
		fmt.Printf("%s (%s), next step in %v\n", wfe.Status.Phase, wfe.Status.Reason, res.RequeueAfter)
		clock.Step(res.RequeueAfter)
	}
	// Output:
	// Running (SimulatedStart), next step in 1s
	// Completed (SimulatedSuccess), next step in 0s
}
