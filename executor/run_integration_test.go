//go:build integration

package executor_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/executor"
)

var runSeq atomic.Int64

// TestRunOnAPIServer runs the Simulator without a manager against a real
// API server, whose watch differs from the fake's (it starts with the
// existing objects): an execution that existed before Run and one created
// while it runs both complete; one the orchestrator had already cancelled
// is never written.
func TestRunOnAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := client.NewWithWatch(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	n := runSeq.Add(1)
	name := func(s string) string { return fmt.Sprintf("run-%s-%d", s, n) }
	create := func(s string) *v1alpha1.WorkflowExecution {
		t.Helper()
		w := newWFE(name(s), "")
		w.UID = ""
		if err := cli.Create(ctx, w); err != nil {
			t.Fatalf("create %s: %v", w.Name, err)
		}
		return w
	}
	phase := func(s string) v1alpha1.WorkflowPhase {
		var w v1alpha1.WorkflowExecution
		if err := cli.Get(ctx, types.NamespacedName{Namespace: ns, Name: name(s)}, &w); err != nil {
			return ""
		}
		return w.Status.Phase
	}

	cancelled := create("cancelled")
	cancelled.Status.Phase, cancelled.Status.Reason = v1alpha1.WorkflowCancelled, "RequestDeleted"
	if err := cli.Status().Update(ctx, cancelled); err != nil {
		t.Fatal(err)
	}
	create("before")

	sim, err := executor.New(cli, executor.Options{Namespace: ns, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- sim.Run(runCtx) }()

	completed := func(s string) {
		t.Helper()
		waitWithin(t, 45*time.Second, name(s)+" to complete", func() bool { return phase(s) == v1alpha1.WorkflowCompleted })
	}
	completed("before")
	create("during")
	completed("during")

	var got v1alpha1.WorkflowExecution
	if err := cli.Get(ctx, client.ObjectKeyFromObject(cancelled), &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != cancelled.ResourceVersion || got.Status.Phase != v1alpha1.WorkflowCancelled {
		t.Errorf("cancelled execution written: phase %q, resourceVersion %s -> %s", got.Status.Phase, cancelled.ResourceVersion, got.ResourceVersion)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancellation, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}
