package orchestrator

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// A non-terminal execution is requeued at its deadline (first seen +
// spec.timeout), and failed with reason TimedOut once past it. Its request
// then finishes as Failed/TimedOut.
func TestTimeout(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
	e := newEnv(t, []client.Object{executing(rr, w), w})

	if res := e.reconcileTimeout(w.Name); res.RequeueAfter != time.Minute {
		t.Fatalf("RequeueAfter = %v at first sight, want the whole timeout", res.RequeueAfter)
	}
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

// A replica whose clock runs 10 minutes ahead of the API server's does not
// fail a fresh execution with a 1-minute timeout: the deadline counts from
// when this replica first saw it, on its own clock. The offset shows only
// in the completion time it writes.
func TestTimeoutClockOffset(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
	e := newEnv(t, []client.Object{executing(rr, w), w}, withOptions(func(o *Options) { o.ClockOffset = 10 * time.Minute }))
	if res := e.reconcileTimeout(w.Name); res.RequeueAfter != time.Minute {
		t.Fatalf("RequeueAfter = %v, want 1m", res.RequeueAfter)
	}
	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowRunning || e.writes.Load() != 0 {
		t.Fatalf("status %+v after %d writes: failed by a skewed clock", got.Status, e.writes.Load())
	}
	e.clock.Step(time.Minute)
	e.reconcileTimeout(w.Name)
	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowFailed || !got.Status.CompletedAt.Time.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("status %+v, want Failed at t0+11m", got.Status)
	}
}

// A name reused by a new execution starts a new deadline.
func TestTimeoutNewUIDStartsOver(t *testing.T) {
	var f firstSeen
	w := &v1alpha1.WorkflowExecution{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "wfe-a", UID: "1"}}
	if got := f.at(w, t0); !got.Equal(t0) {
		t.Fatalf("first sight = %v", got)
	}
	if got := f.at(w, t0.Add(time.Minute)); !got.Equal(t0) {
		t.Fatalf("second sight moved the first: %v", got)
	}
	w.UID = "2"
	if got := f.at(w, t0.Add(time.Minute)); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("new UID kept the old sight: %v", got)
	}
	f.forget(client.ObjectKeyFromObject(w))
	if got := f.at(w, t0.Add(2*time.Minute)); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("forgotten execution kept its sight: %v", got)
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
	e.reconcileTimeout(w.Name) // first sight
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
func TestTimeoutDefault(t *testing.T) {
	w := &v1alpha1.WorkflowExecution{}
	if got := Timeout(w, time.Hour); got != time.Hour {
		t.Fatalf("Timeout = %v", got)
	}
	w.Spec.Timeout = &metav1.Duration{Duration: time.Second}
	if got := Timeout(w, time.Hour); got != time.Second {
		t.Fatalf("Timeout = %v", got)
	}
}

// This replica is paused between its last lock check and its create; its
// lease expires; the request is deleted and finalized by a replica that
// now gets the lock (no execution yet, so the finalizer just goes). The
// paused create then lands: an active execution for a request that no
// longer exists. Its creation event reaches the timeout controller, which
// cancels it (RequestGone) long before its deadline, although the target
// has no other request to notice it.
func TestOrphanAfterPauseIsCancelled(t *testing.T) {
	a := request("rr-a", worker1, 0)
	var e *env
	fired := false
	e = newEnv(t, []client.Object{a}, withOptions(func(o *Options) {
		o.BeforeCreate = func(ctx context.Context) {
			if fired {
				return
			}
			fired = true
			if !e.locker.ForceLoss(worker1.LockKey()) {
				t.Error("no lock to lose")
			}
			var cur v1alpha1.RemediationRequest
			if err := e.raw.Get(ctx, client.ObjectKeyFromObject(a), &cur); err != nil {
				t.Error(err)
				return
			}
			if err := e.raw.Delete(ctx, &cur); err != nil {
				t.Error(err)
			}
			// Another replica's finalize (same code, lock free now).
			e.reconcile("rr-a")
		}
	}))

	e.reconcile("rr-a")

	if err := e.raw.Get(context.Background(), client.ObjectKeyFromObject(a), &v1alpha1.RemediationRequest{}); !apierrors.IsNotFound(err) {
		t.Fatalf("request still there: %v", err)
	}
	ws := e.executions()
	if len(ws) != 1 || ws[0].IsTerminal() {
		t.Fatalf("executions %+v, want the paused replica's active one (the scenario)", ws)
	}
	name := ws[0].Name

	if res := e.reconcileTimeout(name); res.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter = %v after cancelling", res.RequeueAfter)
	}
	got := e.getWFE(name)
	if got.Status.Phase != v1alpha1.WorkflowCancelled || got.Status.Reason != ReasonRequestGone ||
		got.Status.CompletedAt == nil || !got.Status.CompletedAt.Time.Equal(t0) {
		t.Fatalf("execution status %+v, want Cancelled/RequestGone at t0", got.Status)
	}
	if !hasEvent(e.drainEvents(), corev1.EventTypeNormal, string(v1alpha1.PhaseCancelled)) {
		t.Fatal("no Cancelled event")
	}
	if n := e.outcomes("timeout", outcomeCancelled); n != 1 {
		t.Fatalf("cancelled outcomes = %v, want 1", n)
	}
}

// The timeout controller reads the execution's request from the API
// server: an active execution whose request is gone, re-created under the
// same name, or finalized while being deleted is cancelled; one whose
// request is live is left to its deadline; one whose request is being
// deleted with the finalizer still on is looked at again shortly (its
// finalize cancels it, or lets the request go).
func TestTimeoutControllerCancelsOrphans(t *testing.T) {
	deleting := func(rr *v1alpha1.RemediationRequest, finalizers ...string) *v1alpha1.RemediationRequest {
		now := metav1.NewTime(t0)
		rr.DeletionTimestamp = &now
		rr.Finalizers = append([]string{"example.com/hold"}, finalizers...)
		return rr
	}
	for _, tc := range []struct {
		name    string
		owner   *v1alpha1.RemediationRequest // nil: none
		cancel  bool
		requeue bool // after requeueDelay, not at the deadline
	}{
		{name: "request gone", owner: nil, cancel: true},
		{name: "name re-used by another request", owner: func() *v1alpha1.RemediationRequest {
			rr := request("rr-a", worker1, 0)
			rr.UID = "uid-rr-a-again"
			return rr
		}(), cancel: true},
		{name: "deleting, finalize done", owner: deleting(request("rr-a", worker1, 0)), cancel: true},
		{name: "deleting, finalize pending", owner: deleting(request("rr-a", worker1, 0), v1alpha1.FinalizerCancelExecution), requeue: true},
		{name: "live", owner: withFinalizer(request("rr-a", worker1, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := execution(request("rr-a", worker1, 0), 1, v1alpha1.WorkflowRunning)
			w.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
			objs := []client.Object{w}
			if tc.owner != nil {
				objs = append(objs, tc.owner)
			}
			e := newEnv(t, objs)

			res := e.reconcileTimeout(w.Name)

			got := e.getWFE(w.Name)
			if tc.cancel {
				if got.Status.Phase != v1alpha1.WorkflowCancelled || got.Status.Reason != ReasonRequestGone {
					t.Fatalf("execution status %+v, want Cancelled/RequestGone", got.Status)
				}
				if res.RequeueAfter != 0 {
					t.Fatalf("RequeueAfter = %v after cancelling", res.RequeueAfter)
				}
				return
			}
			if got.Status.Phase != v1alpha1.WorkflowRunning || e.writes.Load() != 0 {
				t.Fatalf("execution status %+v after %d writes, want it untouched", got.Status, e.writes.Load())
			}
			want := time.Minute // the deadline
			if tc.requeue {
				want = e.opts.RequeueDelay
			}
			if res.RequeueAfter != want {
				t.Fatalf("RequeueAfter = %v, want %v", res.RequeueAfter, want)
			}
		})
	}
}
