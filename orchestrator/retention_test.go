package orchestrator

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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

// Retention never deletes a fingerprint's latest request, however old and
// terminal: the gateway names the next request after the highest generation
// it lists, so deleting the latest would let the generation go backwards,
// and two gateway replicas that listed before and after the delete would
// create two requests for one incident. Older generations go as usual.
func TestRetentionKeepsTheLatestRequestGeneration(t *testing.T) {
	longAgo := metav1.NewTime(t0.Add(-48 * time.Hour))
	fpA, fpB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	gen := func(name, fp string, g int, phase v1alpha1.RemediationPhase) *v1alpha1.RemediationRequest {
		rr := request(name, worker1, -72*time.Hour)
		rr.Spec.Fingerprint = fp
		rr.Labels[v1alpha1.LabelFingerprint] = v1alpha1.FingerprintLabelValue(fp)
		rr.Labels[v1alpha1.LabelGeneration] = strconv.Itoa(g)
		rr.Status.Phase = phase
		if rr.IsTerminal() {
			rr.Status.Conditions = []metav1.Condition{{Type: ConditionFinished, Status: metav1.ConditionTrue, Reason: string(phase), LastTransitionTime: longAgo}}
		}
		return rr
	}
	objs := []client.Object{
		gen("rr-a-1", fpA, 1, v1alpha1.PhaseCompleted), // deleted
		gen("rr-a-2", fpA, 2, v1alpha1.PhaseFailed),    // deleted
		gen("rr-a-3", fpA, 3, v1alpha1.PhaseCompleted), // kept: latest of fpA
		gen("rr-b-1", fpB, 1, v1alpha1.PhaseCompleted), // deleted
		gen("rr-b-2", fpB, 2, v1alpha1.PhaseExecuting), // kept: not terminal, and latest
	}
	e := newEnv(t, objs, withOptions(func(o *Options) { o.Retention = 24 * time.Hour }))

	// nextGeneration is the gateway's rule: the highest generation label of
	// the fingerprint's requests, plus one.
	nextGeneration := func(fp string) int64 {
		var l v1alpha1.RemediationRequestList
		if err := e.c.List(context.Background(), &l, client.InNamespace(testNS),
			client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp)}); err != nil {
			t.Fatal(err)
		}
		var top int64
		for i := range l.Items {
			if l.Items[i].Spec.Fingerprint == fp {
				top = max(top, requestGeneration(&l.Items[i]))
			}
		}
		return top + 1
	}
	beforeA, beforeB := nextGeneration(fpA), nextGeneration(fpB)

	ret := &retention{api: e.c, client: e.c, opts: e.opts, metrics: e.rr.metrics}
	n, err := ret.sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("deleted %d, want 3 (rr-a-1, rr-a-2, rr-b-1)", n)
	}
	for name, want := range map[string]bool{"rr-a-1": false, "rr-a-2": false, "rr-a-3": true, "rr-b-1": false, "rr-b-2": true} {
		err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &v1alpha1.RemediationRequest{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if got := err == nil; got != want {
			t.Errorf("request %s exists = %v, want %v", name, got, want)
		}
	}
	if a, b := nextGeneration(fpA), nextGeneration(fpB); a != beforeA || b != beforeB {
		t.Fatalf("next generations after retention: %d, %d; before: %d, %d", a, b, beforeA, beforeB)
	}
	if got := testutil.ToFloat64(e.rr.metrics.retentionDeleted.WithLabelValues("RemediationRequest")); got != 3 {
		t.Fatalf("retention_deleted_total{kind=RemediationRequest} = %v, want 3", got)
	}

	// A second pass, once everything is old, still keeps the latest.
	if n, err := ret.sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("second pass: deleted %d, %v; want 0", n, err)
	}
}

// The retention runnable sweeps at once and then every interval on the
// injected clock, until its context ends.
func TestRetentionRunsOnInterval(t *testing.T) {
	e := newEnv(t, nil, withOptions(func(o *Options) { o.RetentionInterval = time.Minute }))
	lists := make(chan struct{}, 10)
	ret := &retention{api: countingReader{Reader: e.c, lists: lists}, client: e.c, opts: e.opts, metrics: e.rr.metrics}
	ctx, cancel := context.WithCancel(context.Background())
	var startErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		startErr = ret.Start(ctx)
	}()
	// Also on a failure below, so that no goroutine outlives the test.
	t.Cleanup(func() { cancel(); <-done })

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
	// The pass ends by waiting on the interval's timer; fail, not hang, if
	// it never does.
	for deadline := time.Now().Add(10 * time.Second); !e.clock.HasWaiters(); {
		if time.Now().After(deadline) {
			t.Fatal("the retention runnable never waited for its interval")
		}
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
	<-done
	if startErr != nil {
		t.Fatal(startErr)
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
