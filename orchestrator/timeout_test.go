package orchestrator

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

func (e *env) reconcileTimeout(name string) reconcile.Result {
	e.t.Helper()
	res, err := e.timeout.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: name}})
	if err != nil {
		e.t.Fatalf("reconcile timeout %s: %v", name, err)
	}
	return res
}

// A non-terminal execution is requeued at its deadline (creation +
// spec.timeout), and failed with reason TimedOut once past it. Its request
// then finishes as Failed/TimedOut.
func TestTimeout(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
	e := newEnv(t, []client.Object{executing(rr, w), w})

	e.clock.Step(20 * time.Second)
	if res := e.reconcileTimeout(w.Name); res.RequeueAfter != 40*time.Second {
		t.Fatalf("RequeueAfter = %v, want 40s (the deadline)", res.RequeueAfter)
	}
	if e.writes.Load() != 0 || e.getWFE(w.Name).Status.Phase != v1alpha1.WorkflowRunning {
		t.Fatal("execution changed before its deadline")
	}

	e.clock.Step(40 * time.Second)
	if res := e.reconcileTimeout(w.Name); res.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter = %v after timing out", res.RequeueAfter)
	}
	got := e.getWFE(w.Name)
	if got.Status.Phase != v1alpha1.WorkflowFailed || got.Status.Reason != ReasonTimedOut ||
		got.Status.CompletedAt == nil || !got.Status.CompletedAt.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("status %+v, want Failed/TimedOut completed at t0+1m", got.Status)
	}
	if !hasEvent(e.drainEvents(), corev1.EventTypeWarning, ReasonTimedOut) {
		t.Fatal("no TimedOut event")
	}
	if n := e.outcomes("timeout", outcomeTimedOut); n != 1 {
		t.Fatalf("timed_out outcomes = %v", n)
	}

	e.reconcile("rr-a")
	r := e.getRR("rr-a")
	if r.Status.Phase != v1alpha1.PhaseFailed || findTestCondition(r, ConditionFinished).Reason != ReasonTimedOut {
		t.Fatalf("request status %+v, want Failed/TimedOut", r.Status)
	}
}

// ClockOffset moves this replica's wall clock, timeout decisions included.
func TestTimeoutClockOffset(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
	e := newEnv(t, []client.Object{executing(rr, w), w}, withOptions(func(o *Options) { o.ClockOffset = 2 * time.Minute }))
	e.reconcileTimeout(w.Name)
	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowFailed || !got.Status.CompletedAt.Time.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("status %+v, want Failed at t0+2m", got.Status)
	}
}

// The executor finishing the execution at the same moment wins: the
// timeout write, based on the older version, gets a Conflict and is
// retried, and the retry sees a terminal execution.
func TestTimeoutLosesToExecutor(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
	e := newEnv(t, []client.Object{executing(rr, w), w}, withInterceptor(func(e *env, fs *interceptor.Funcs) {
		fs.SubResourcePatch = func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			var cur v1alpha1.WorkflowExecution
			if err := e.raw.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
				return err
			}
			if !cur.IsTerminal() {
				cur.Status.Phase = v1alpha1.WorkflowCompleted
				if err := e.raw.Status().Update(ctx, &cur); err != nil {
					return err
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}
	}))
	e.clock.Step(2 * time.Minute)
	if res := e.reconcileTimeout(w.Name); res.RequeueAfter == 0 || e.outcomes("timeout", outcomeConflict) != 1 {
		t.Fatalf("RequeueAfter %v, conflict outcomes %v", res.RequeueAfter, e.outcomes("timeout", outcomeConflict))
	}
	e.reconcileTimeout(w.Name)
	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowCompleted {
		t.Fatalf("the executor's Completed was overwritten: %+v", got.Status)
	}
}

// An execution without spec.timeout gets the default one.
func TestDeadlineDefault(t *testing.T) {
	w := &v1alpha1.WorkflowExecution{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}}
	if got := Deadline(w, time.Hour); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Deadline = %v", got)
	}
	w.Spec.Timeout = &metav1.Duration{Duration: time.Second}
	if got := Deadline(w, time.Hour); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("Deadline = %v", got)
	}
}
