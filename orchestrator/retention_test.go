package orchestrator

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Retention deletes terminal requests and executions older than the
// retention age, and keeps each target's latest execution whatever its age.
func TestRetentionKeepsTheLatestExecution(t *testing.T) {
	worker2 := worker1
	worker2.Name = "worker-2"
	longAgo := metav1.NewTime(t0.Add(-48 * time.Hour))
	recently := metav1.NewTime(t0.Add(-time.Hour))

	old := request("rr-old", worker1, -72*time.Hour)
	old.Status.Phase = v1alpha1.PhaseCompleted
	old.Status.Conditions = []metav1.Condition{{Type: ConditionFinished, Status: metav1.ConditionTrue, Reason: "Completed", LastTransitionTime: longAgo}}
	fresh := request("rr-fresh", worker1, -72*time.Hour)
	fresh.Status.Phase = v1alpha1.PhaseFailed
	fresh.Status.Conditions = []metav1.Condition{{Type: ConditionFinished, Status: metav1.ConditionTrue, Reason: "Failed", LastTransitionTime: recently}}
	stuck := request("rr-stuck", worker1, -72*time.Hour)
	stuck.Status.Phase = v1alpha1.PhaseBlocked
	only := request("rr-only", worker2, -72*time.Hour)
	only.Status.Phase = v1alpha1.PhaseCompleted
	only.Status.Conditions = []metav1.Condition{{Type: ConditionFinished, Status: metav1.ConditionTrue, Reason: "Completed", LastTransitionTime: longAgo}}

	objs := []client.Object{old, fresh, stuck, only}
	wfe := func(rr *v1alpha1.RemediationRequest, seq int64, phase v1alpha1.WorkflowPhase, completed *metav1.Time) *v1alpha1.WorkflowExecution {
		w := execution(rr, seq, phase)
		w.CreationTimestamp = metav1.NewTime(t0.Add(-72 * time.Hour))
		w.Status.CompletedAt = completed
		objs = append(objs, w)
		return w
	}
	w1 := wfe(old, 1, v1alpha1.WorkflowCompleted, &longAgo)  // deleted
	w2 := wfe(old, 2, v1alpha1.WorkflowFailed, &recently)    // kept: young
	w3 := wfe(old, 3, v1alpha1.WorkflowCompleted, &longAgo)  // kept: latest of worker-1
	u1 := wfe(only, 1, v1alpha1.WorkflowCompleted, &longAgo) // kept: latest of worker-2
	e := newEnv(t, objs, withOptions(func(o *Options) { o.Retention = 24 * time.Hour }))
	_ = w2

	ret := &retention{api: e.c, client: e.c, opts: e.opts, metrics: e.rr.metrics}
	n, err := ret.sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("deleted %d, want 3 (one execution, two requests)", n)
	}
	exists := func(obj client.Object, name string) bool {
		err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, obj)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	for name, want := range map[string]bool{w1.Name: false, w2.Name: true, w3.Name: true, u1.Name: true} {
		if got := exists(&v1alpha1.WorkflowExecution{}, name); got != want {
			t.Errorf("execution %s exists = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{"rr-old": false, "rr-fresh": true, "rr-stuck": true, "rr-only": false} {
		if got := exists(&v1alpha1.RemediationRequest{}, name); got != want {
			t.Errorf("request %s exists = %v, want %v", name, got, want)
		}
	}
}

// The retention runnable sweeps at once and then every interval on the
// injected clock, until its context ends.
func TestRetentionRunsOnInterval(t *testing.T) {
	e := newEnv(t, nil, withOptions(func(o *Options) { o.RetentionInterval = time.Minute }))
	lists := make(chan struct{}, 10)
	ret := &retention{api: countingReader{Reader: e.c, lists: lists}, client: e.c, opts: e.opts, metrics: e.rr.metrics}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ret.Start(ctx) }()

	waitLists := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-lists:
			case <-time.After(10 * time.Second):
				t.Fatal("no retention pass")
			}
		}
	}
	waitLists(2) // executions and requests, at start
	for !e.clock.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-lists:
		t.Fatal("a pass ran before the interval")
	default:
	}
	e.clock.Step(time.Minute)
	waitLists(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type countingReader struct {
	client.Reader
	lists chan struct{}
}

func (r countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists <- struct{}{}
	return r.Reader.List(ctx, list, opts...)
}
