package stack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func crdEstablished(name string, at time.Time, status apiextensionsv1.ConditionStatus) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: apiextensionsv1.CustomResourceDefinitionStatus{Conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
			{Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionTrue, LastTransitionTime: metav1.NewTime(at.Add(time.Hour))},
			{Type: apiextensionsv1.Established, Status: status, LastTransitionTime: metav1.NewTime(at)},
		}},
	}
}

func stackWithCRDs(t *testing.T, clk *clocktesting.FakeClock, crds ...client.Object) *Stack {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return &Stack{
		cli:  fake.NewClientBuilder().WithScheme(scheme).WithObjects(crds...).Build(),
		opts: Options{Clock: clk},
	}
}

// Creates made within two seconds of a CRD becoming Established are held
// by the API server; the demo waits the rest of that time for the later of
// the two CRDs, on the injected clock.
func TestWaitCRDsSettled(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0.Add(500 * time.Millisecond))
	s := stackWithCRDs(t, clk,
		crdEstablished(demoCRDs[0], t0.Add(-time.Second), apiextensionsv1.ConditionTrue),
		crdEstablished(demoCRDs[1], t0, apiextensionsv1.ConditionTrue))
	var out strings.Builder
	done := make(chan error, 1)
	go func() { done <- s.waitCRDsSettled(context.Background(), &out) }()

	// The later CRD settles at t0+2s, 1.5s from now.
	waitForWaiter(t, clk)
	clk.Step(1499 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("returned %v with 1ms left to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	clk.Step(time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not return once the CRDs had settled")
	}
	if !strings.Contains(out.String(), "waiting 1.5s") {
		t.Errorf("output %q does not say how long it waits", out.String())
	}
}

func TestWaitCRDsSettledAlready(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0.Add(2 * time.Second))
	s := stackWithCRDs(t, clk,
		crdEstablished(demoCRDs[0], t0, apiextensionsv1.ConditionTrue),
		crdEstablished(demoCRDs[1], t0, apiextensionsv1.ConditionTrue))
	var out strings.Builder
	if err := s.waitCRDsSettled(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q without waiting", out.String())
	}
}

func TestWaitCRDsSettledErrors(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0.Add(time.Minute))
	for name, crds := range map[string][]client.Object{
		"not established": {crdEstablished(demoCRDs[0], t0, apiextensionsv1.ConditionTrue), crdEstablished(demoCRDs[1], t0, apiextensionsv1.ConditionFalse)},
		"missing":         {crdEstablished(demoCRDs[0], t0, apiextensionsv1.ConditionTrue)},
	} {
		t.Run(name, func(t *testing.T) {
			err := stackWithCRDs(t, clk, crds...).waitCRDsSettled(context.Background(), &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), demoCRDs[1]) {
				t.Errorf("error = %v, want one naming %s", err, demoCRDs[1])
			}
		})
	}
}

func TestWaitCRDsSettledCancelled(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	s := stackWithCRDs(t, clk,
		crdEstablished(demoCRDs[0], t0, apiextensionsv1.ConditionTrue),
		crdEstablished(demoCRDs[1], t0, apiextensionsv1.ConditionTrue))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.waitCRDsSettled(ctx, &strings.Builder{}) }()
	waitForWaiter(t, clk)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not return when its context ended")
	}
}

// waitForWaiter polls until something waits on clk's timers.
func waitForWaiter(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !clk.HasWaiters() {
		select {
		case <-deadline:
			t.Fatal("nothing ever waited on the clock")
		case <-tick.C:
		}
	}
}
