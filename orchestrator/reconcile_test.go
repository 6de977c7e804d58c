package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
)

// A held target lock: the reconcile requeues after RequeueDelay jittered
// within ±50%, and writes nothing.
func TestContentionRequeuesWithoutWriting(t *testing.T) {
	for _, tc := range []struct {
		rand float64
		want time.Duration
	}{
		{0, 50 * time.Millisecond},
		{0.5, 100 * time.Millisecond},
		{0.999, 149900 * time.Microsecond},
	} {
		t.Run(strconv.FormatFloat(tc.rand, 'f', -1, 64), func(t *testing.T) {
			rr := request("rr-a", worker1, 0)
			e := newEnv(t, []client.Object{rr}, withOptions(func(o *Options) { o.Rand = func() float64 { return tc.rand } }))
			e.locker.Hold(worker1.LockKey())

			res := e.reconcile("rr-a")
			if res.RequeueAfter != tc.want {
				t.Fatalf("RequeueAfter = %v, want %v", res.RequeueAfter, tc.want)
			}
			if n := e.writes.Load(); n != 0 {
				t.Fatalf("%d writes under contention, want none", n)
			}
			if got := e.getRR("rr-a"); got.Status.Phase != "" || len(got.Finalizers) != 0 {
				t.Fatalf("request changed under contention: %+v %v", got.Status, got.Finalizers)
			}
			if n := e.outcomes("request", outcomeContended); n != 1 {
				t.Fatalf("contended outcomes = %v, want 1", n)
			}
		})
	}
}

// An active execution of another request: the request becomes Blocked,
// reason ResourceBusy, naming it, and is re-examined after BlockedResync.
// A second reconcile with nothing changed writes nothing. Whether the
// cache already shows the execution (no lock needed to wait) or not (the
// lock and uncached reads find it) makes no difference.
func TestBusyTargetBlocks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool
		locks int
	}{{"cache shows the execution", false, 0}, {"cache misses it", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			first := request("rr-first", worker1, 0)
			w := execution(first, 1, v1alpha1.WorkflowRunning)
			rr := request("rr-b", worker1, time.Second)
			opts := []envOption{}
			if tc.stale {
				opts = append(opts, staleCache())
			}
			e := newEnv(t, []client.Object{executing(first, w), w, rr}, opts...)

			res := e.reconcile("rr-b")
			if res.RequeueAfter != e.opts.BlockedResync {
				t.Fatalf("RequeueAfter = %v, want BlockedResync %v", res.RequeueAfter, e.opts.BlockedResync)
			}
			e.assertBlockedBy("rr-b", w.Name)
			if len(e.executions()) != 1 {
				t.Fatalf("executions: %d, want 1", len(e.executions()))
			}
			evs := e.drainEvents()
			if !hasEvent(evs, corev1.EventTypeNormal, "Blocked") {
				t.Fatalf("events %q: no Blocked", evs)
			}
			if got := e.getRR("rr-b"); contains(got.Finalizers, v1alpha1.FinalizerCancelExecution) {
				t.Fatalf("a blocked request got the finalizer before any execution was created for it: %v", got.Finalizers)
			}

			writes := e.writes.Load()
			e.reconcile("rr-b")
			if n := e.writes.Load() - writes; n != 0 {
				t.Fatalf("%d writes on an unchanged re-reconcile", n)
			}
			if evs := e.drainEvents(); len(evs) != 0 {
				t.Fatalf("events on an unchanged re-reconcile: %q", evs)
			}
			if n := e.locker.Acquisitions(worker1.LockKey()); n != tc.locks {
				t.Fatalf("%d lock acquisitions, want %d", n, tc.locks)
			}
		})
	}
}

// Waiting needs no lock: with the cache showing an active execution, a
// request blocks even while another replica holds the target's lock.
func TestBlockingNeedsNoLock(t *testing.T) {
	first := request("rr-first", worker1, 0)
	w := execution(first, 1, v1alpha1.WorkflowRunning)
	rr := request("rr-b", worker1, time.Second)
	e := newEnv(t, []client.Object{executing(first, w), w, rr})
	e.locker.Hold(worker1.LockKey())
	e.reconcile("rr-b")
	e.assertBlockedBy("rr-b", w.Name)
	if n := e.outcomes("request", outcomeContended); n != 0 {
		t.Fatalf("%v contended outcomes", n)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// A free target: the next execution is created with the deterministic
// name, sequence (latest + 1), lock token, labels and timeout, and the
// request becomes Executing with the reference.
func TestFreeTargetStarts(t *testing.T) {
	old := request("rr-old", worker1, -time.Hour)
	old.Status.Phase = v1alpha1.PhaseCompleted
	var objs []client.Object
	for seq := int64(1); seq <= 3; seq++ {
		objs = append(objs, execution(old, seq, v1alpha1.WorkflowCompleted))
	}
	rr := request("rr-a", worker1, 0)
	objs = append(objs, old, rr)
	e := newEnv(t, objs)

	e.reconcile("rr-a")

	name := ExecutionName(worker1, 4)
	w := e.getWFE(name)
	if w.Spec.Sequence != 4 || w.Labels[v1alpha1.LabelGeneration] != "4" || w.Labels[v1alpha1.LabelTarget] != v1alpha1.TargetLabelValue(worker1) {
		t.Fatalf("execution %s: sequence %d labels %v", name, w.Spec.Sequence, w.Labels)
	}
	if w.Spec.RemediationRequestRef != (v1alpha1.ObjectReference{Name: "rr-a", UID: "uid-rr-a"}) || w.Spec.Target != worker1 {
		t.Fatalf("execution spec %+v", w.Spec)
	}
	if w.Spec.Timeout == nil || w.Spec.Timeout.Duration != e.opts.DefaultTimeout {
		t.Fatalf("timeout %v, want %v", w.Spec.Timeout, e.opts.DefaultTimeout)
	}
	if len(w.OwnerReferences) != 0 {
		t.Fatalf("execution has owner references %v: the latest execution must never be collected", w.OwnerReferences)
	}
	// The token is the lock's: a later acquisition of the same key gets a
	// strictly greater one.
	tok, err := lease.ParseToken(w.Spec.FencingToken)
	if err != nil || tok.IsZero() {
		t.Fatalf("fencing token %q: %v", w.Spec.FencingToken, err)
	}
	lk, err := e.locker.TryAcquire(context.Background(), worker1.LockKey())
	if err != nil {
		t.Fatalf("the lock was not released: %v", err)
	}
	if c, err := tok.Compare(lk.Token()); err != nil || c >= 0 {
		t.Fatalf("token %s not older than the next acquisition's %s (%v)", tok, lk.Token(), err)
	}
	_ = lk.Release(context.Background())

	e.assertExecuting("rr-a", name)
	got := e.getRR("rr-a")
	if !contains(got.Finalizers, v1alpha1.FinalizerCancelExecution) {
		t.Fatalf("no finalizer on a started request: %v", got.Finalizers)
	}
	if !hasEvent(e.drainEvents(), corev1.EventTypeNormal, ReasonStarted) {
		t.Fatal("no Started event")
	}
	if n := e.outcomes("request", outcomeStarted); n != 1 {
		t.Fatalf("started outcomes = %v", n)
	}
	if len(e.executions()) != 4 {
		t.Fatalf("%d executions, want 4", len(e.executions()))
	}
}

// An execution of the same request exists (an earlier reconcile created it
// and its status write was lost): success, no second execution, whether
// the cache shows it or only the API server does.
func TestIdempotentRestart(t *testing.T) {
	for _, stale := range []bool{false, true} {
		t.Run("stale="+strconv.FormatBool(stale), func(t *testing.T) {
			rr := withFinalizer(request("rr-a", worker1, 0))
			w := execution(rr, 1, v1alpha1.WorkflowPending)
			var opts []envOption
			if stale {
				opts = append(opts, staleCache())
			}
			e := newEnv(t, []client.Object{rr, w}, opts...)

			e.reconcile("rr-a")
			e.reconcile("rr-a")

			if n := len(e.executions()); n != 1 {
				t.Fatalf("%d executions, want 1", n)
			}
			e.assertExecuting("rr-a", w.Name)
			if got := e.getRR("rr-a").Status.WorkflowExecutionRef.UID; got != string(w.UID) {
				t.Fatalf("reference UID %q, want %q", got, w.UID)
			}
		})
	}
}

// The pause: between the lock check and the create another replica starts
// this generation for another request. The create gets AlreadyExists; the
// request ends Blocked on that execution, and no second execution exists.
func TestNameCollisionBlocks(t *testing.T) {
	rr := request("rr-a", worker1, time.Second)
	other := request("rr-other", worker1, 0) // earlier, created after our read
	var e *env
	e = newEnv(t, []client.Object{rr}, withOptions(func(o *Options) {
		o.BeforeCreate = func(ctx context.Context) {
			if err := e.raw.Create(ctx, withFinalizer(other)); err != nil {
				t.Errorf("create other request: %v", err)
			}
			if err := e.raw.Create(ctx, execution(other, 1, v1alpha1.WorkflowRunning)); err != nil {
				t.Errorf("create other execution: %v", err)
			}
		}
	}))

	e.reconcile("rr-a")

	name := ExecutionName(worker1, 1)
	e.assertBlockedBy("rr-a", name)
	ws := e.executions()
	if len(ws) != 1 || ws[0].Spec.RemediationRequestRef.Name != "rr-other" {
		t.Fatalf("executions %+v, want only the other request's", ws)
	}
	if n := e.outcomes("request", outcomeFenced); n != 1 {
		t.Fatalf("fenced outcomes = %v, want 1", n)
	}
}

// CheckToCreateDelay stretches the window on the injected clock: nothing is
// created until the clock has moved by the delay.
func TestCheckToCreateDelay(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	e := newEnv(t, []client.Object{rr}, withOptions(func(o *Options) { o.CheckToCreateDelay = time.Minute }))

	done := make(chan error, 1)
	go func() {
		_, err := e.rr.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "rr-a"}})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !e.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the reconcile never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
	if n := len(e.executions()); n != 0 {
		t.Fatalf("%d executions created before the delay passed", n)
	}
	e.clock.Step(time.Minute)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.assertExecuting("rr-a", ExecutionName(worker1, 1))
}

// Only the earliest startable request of a target (receivedAt, then name)
// may start. Reconciling a later one starts the earliest one's execution
// (giving it the finalizer first) and blocks the later one on it; the
// earliest then records its execution.
func TestOnlyTheEarliestStarts(t *testing.T) {
	early := request("rr-z-early", worker1, 0)
	late := request("rr-a-late", worker1, time.Second)
	tie := request("rr-b-tie", worker1, 0) // same receivedAt as early, name sorts first
	e := newEnv(t, []client.Object{early, late, tie})

	e.reconcile("rr-a-late")

	name := ExecutionName(worker1, 1)
	w := e.getWFE(name)
	if w.Spec.RemediationRequestRef.Name != "rr-b-tie" {
		t.Fatalf("execution went to %s, want rr-b-tie (earliest receivedAt, then name)", w.Spec.RemediationRequestRef.Name)
	}
	if !contains(e.getRR("rr-b-tie").Finalizers, v1alpha1.FinalizerCancelExecution) {
		t.Fatal("the started request has no finalizer")
	}
	e.assertBlockedBy("rr-a-late", name)

	e.reconcile("rr-b-tie")
	e.assertExecuting("rr-b-tie", name)
	e.reconcile("rr-z-early")
	e.assertBlockedBy("rr-z-early", name)
	if n := len(e.executions()); n != 1 {
		t.Fatalf("%d executions, want 1", n)
	}
}

// A finished execution moves its request to the matching terminal phase
// with the execution's reason, and the finalizer goes.
func TestTerminalExecutionFinishesRequest(t *testing.T) {
	for _, tc := range []struct {
		phase      v1alpha1.WorkflowPhase
		reason     string
		want       v1alpha1.RemediationPhase
		wantReason string
		eventType  string
	}{
		{v1alpha1.WorkflowCompleted, "", v1alpha1.PhaseCompleted, "Completed", corev1.EventTypeNormal},
		{v1alpha1.WorkflowFailed, "StepFailed", v1alpha1.PhaseFailed, "StepFailed", corev1.EventTypeWarning},
		{v1alpha1.WorkflowFailed, ReasonTimedOut, v1alpha1.PhaseFailed, ReasonTimedOut, corev1.EventTypeWarning},
		{v1alpha1.WorkflowCancelled, "not a valid reason!", v1alpha1.PhaseCancelled, "Cancelled", corev1.EventTypeNormal},
	} {
		t.Run(string(tc.phase)+"/"+tc.reason, func(t *testing.T) {
			rr := request("rr-a", worker1, 0)
			w := execution(rr, 1, tc.phase)
			w.Status.Reason = tc.reason
			w.Status.Message = "details"
			e := newEnv(t, []client.Object{executing(rr, w), w})

			e.reconcile("rr-a")

			got := e.getRR("rr-a")
			if got.Status.Phase != tc.want {
				t.Fatalf("phase %q, want %q", got.Status.Phase, tc.want)
			}
			c := findTestCondition(got, ConditionFinished)
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != tc.wantReason {
				t.Fatalf("Finished condition %+v, want True/%s", c, tc.wantReason)
			}
			if c := findTestCondition(got, ConditionExecuting); c == nil || c.Status != metav1.ConditionFalse {
				t.Fatalf("Executing condition %+v, want False", c)
			}
			if len(got.Finalizers) != 0 {
				t.Fatalf("finalizers %v left on a terminal request", got.Finalizers)
			}
			if !hasEvent(e.drainEvents(), tc.eventType, string(tc.want)) {
				t.Fatalf("no %s %s event", tc.eventType, tc.want)
			}
		})
	}
}

// A running execution keeps its request Executing and costs no write.
func TestRunningExecutionUnchanged(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	e := newEnv(t, []client.Object{executing(rr, w), w})
	e.reconcile("rr-a")
	if n := e.writes.Load(); n != 0 {
		t.Fatalf("%d writes for a running execution", n)
	}
}

// An Executing request whose execution was deleted is Failed.
func TestMissingExecutionFails(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	w := execution(rr, 1, v1alpha1.WorkflowRunning)
	e := newEnv(t, []client.Object{executing(rr, w)})
	e.reconcile("rr-a")
	got := e.getRR("rr-a")
	if got.Status.Phase != v1alpha1.PhaseFailed || findTestCondition(got, ConditionFinished).Reason != ReasonExecutionMissing {
		t.Fatalf("status %+v", got.Status)
	}
}

// The gateway owns status.deduplication and updates it concurrently: a
// status write that raced it gets a Conflict and requeues, and never
// overwrites the count.
func TestStatusWriteNeverClobbersDeduplication(t *testing.T) {
	first := request("rr-first", worker1, 0)
	w := execution(first, 1, v1alpha1.WorkflowRunning)
	rr := request("rr-b", worker1, time.Second)
	rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 5, FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: rr.Spec.ReceivedAt}
	raced := false
	e := newEnv(t, []client.Object{executing(first, w), w, rr}, withInterceptor(func(e *env, fs *interceptor.Funcs) {
		fs.SubResourcePatch = func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if !raced && obj.GetName() == "rr-b" {
				// The gateway counts one more signal first.
				raced = true
				var cur v1alpha1.RemediationRequest
				if err := e.raw.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
					return err
				}
				cur.Status.Deduplication.OccurrenceCount++
				if err := e.raw.Status().Update(ctx, &cur); err != nil {
					return err
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}
	}))

	res := e.reconcile("rr-b")
	if res.RequeueAfter != e.opts.RequeueDelay || e.outcomes("request", outcomeConflict) != 1 {
		t.Fatalf("after a lost race: RequeueAfter %v, conflict outcomes %v", res.RequeueAfter, e.outcomes("request", outcomeConflict))
	}
	if got := e.getRR("rr-b"); got.Status.Deduplication.OccurrenceCount != 6 || got.Status.Phase != "" {
		t.Fatalf("after the lost race: %+v", got.Status)
	}

	e.reconcile("rr-b")
	e.assertBlockedBy("rr-b", w.Name)
	if got := e.getRR("rr-b"); got.Status.Deduplication.OccurrenceCount != 6 {
		t.Fatalf("deduplication clobbered: %+v", got.Status.Deduplication)
	}
}

// An active execution whose request is gone (deleted while a replica was
// creating the execution) is cancelled, and the next request starts.
func TestOrphanedExecutionIsCancelled(t *testing.T) {
	gone := request("rr-gone", worker1, 0)
	orphan := execution(gone, 1, v1alpha1.WorkflowRunning)
	rr := request("rr-a", worker1, time.Second)
	e := newEnv(t, []client.Object{orphan, rr})

	e.reconcile("rr-a")

	if got := e.getWFE(orphan.Name); got.Status.Phase != v1alpha1.WorkflowCancelled || got.Status.Reason != ReasonRequestGone {
		t.Fatalf("orphan status %+v", got.Status)
	}
	e.assertExecuting("rr-a", ExecutionName(worker1, 2))
}

// An active execution whose request merely lost its target label is not
// an orphan: the request is found by name, and the newcomer blocks.
func TestUnlabelledOwnerIsNotAnOrphan(t *testing.T) {
	owner := request("rr-owner", worker1, 0)
	w := execution(owner, 1, v1alpha1.WorkflowRunning)
	executing(owner, w)
	delete(owner.Labels, v1alpha1.LabelTarget)
	rr := request("rr-a", worker1, time.Second)
	e := newEnv(t, []client.Object{owner, w, rr})

	e.reconcile("rr-a")

	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowRunning {
		t.Fatalf("execution of a live request changed: %+v", got.Status)
	}
	e.assertBlockedBy("rr-a", w.Name)
}

// A request without the target label gets it before anything else.
func TestMissingTargetLabelIsAdded(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	delete(rr.Labels, v1alpha1.LabelTarget)
	e := newEnv(t, []client.Object{rr})
	e.reconcile("rr-a")
	if got := e.getRR("rr-a"); got.Labels[v1alpha1.LabelTarget] != v1alpha1.TargetLabelValue(worker1) {
		t.Fatalf("labels %v", got.Labels)
	}
	e.assertExecuting("rr-a", ExecutionName(worker1, 1))
}

// Deleting an Executing request cancels its execution (RequestDeleted),
// removes the finalizer, and the next request then starts.
func TestDeletionCancelsAndUnblocksNext(t *testing.T) {
	a := request("rr-a", worker1, 0)
	w := execution(a, 1, v1alpha1.WorkflowRunning)
	b := request("rr-b", worker1, time.Second)
	e := newEnv(t, []client.Object{executing(a, w), w, b})
	e.reconcile("rr-b")
	e.assertBlockedBy("rr-b", w.Name)

	if err := e.raw.Delete(context.Background(), e.getRR("rr-a")); err != nil {
		t.Fatal(err)
	}
	e.reconcile("rr-a")

	got := e.getWFE(w.Name)
	if got.Status.Phase != v1alpha1.WorkflowCancelled || got.Status.Reason != ReasonRequestDeleted || got.Status.CompletedAt == nil {
		t.Fatalf("execution status %+v, want Cancelled/RequestDeleted", got.Status)
	}
	var gone v1alpha1.RemediationRequest
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "rr-a"}, &gone); !apierrors.IsNotFound(err) {
		t.Fatalf("deleted request still there (finalizers %v): %v", gone.Finalizers, err)
	}

	// The cancellation is an execution event that wakes rr-b.
	q := newQueue()
	e.rr.executionHandler().Update(context.Background(), updateEvent(w, got), q)
	if !q.has("rr-b") {
		t.Fatalf("the end of %s did not wake rr-b: %v", w.Name, q.items())
	}
	e.reconcile("rr-b")
	e.assertExecuting("rr-b", ExecutionName(worker1, 2))
}

// Deleting a request that never got an execution touches no execution.
func TestDeletionWithoutExecution(t *testing.T) {
	a := request("rr-a", worker1, 0)
	w := execution(a, 1, v1alpha1.WorkflowRunning)
	b := withFinalizer(request("rr-b", worker1, time.Second))
	e := newEnv(t, []client.Object{executing(a, w), w, b})
	if err := e.raw.Delete(context.Background(), e.getRR("rr-b")); err != nil {
		t.Fatal(err)
	}
	e.reconcile("rr-b")
	if got := e.getWFE(w.Name); got.Status.Phase != v1alpha1.WorkflowRunning {
		t.Fatalf("another request's execution changed: %+v", got.Status)
	}
	var gone v1alpha1.RemediationRequest
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "rr-b"}, &gone); !apierrors.IsNotFound(err) {
		t.Fatalf("request still there: %v", err)
	}
}

// Deletion takes the target lock too: under contention it requeues and
// cancels nothing.
func TestDeletionUnderContention(t *testing.T) {
	a := request("rr-a", worker1, 0)
	w := execution(a, 1, v1alpha1.WorkflowRunning)
	e := newEnv(t, []client.Object{executing(a, w), w})
	if err := e.raw.Delete(context.Background(), e.getRR("rr-a")); err != nil {
		t.Fatal(err)
	}
	e.locker.Hold(worker1.LockKey())
	if res := e.reconcile("rr-a"); res.RequeueAfter == 0 {
		t.Fatal("no requeue under contention")
	}
	if e.writes.Load() != 0 {
		t.Fatalf("%d writes under contention", e.writes.Load())
	}
}

// Requests outside the namespace are ignored.
func TestOtherNamespaceIgnored(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	rr.Namespace = "elsewhere"
	e := newEnv(t, []client.Object{rr})
	_, err := e.rr.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "elsewhere", Name: "rr-a"}})
	if err != nil || e.writes.Load() != 0 {
		t.Fatalf("err %v, writes %d", err, e.writes.Load())
	}
}

// API errors are returned (the controller backs off) and create nothing.
func TestListErrorIsReturned(t *testing.T) {
	boom := errors.New("boom")
	rr := request("rr-a", worker1, 0)
	e := newEnv(t, []client.Object{rr}, withInterceptor(func(_ *env, fs *interceptor.Funcs) {
		fs.List = func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error { return boom }
	}))
	_, err := e.rr.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "rr-a"}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if e.writes.Load() != 0 {
		t.Fatalf("%d writes", e.writes.Load())
	}
	// The lock was released despite the error.
	lk, err := e.locker.TryAcquire(context.Background(), worker1.LockKey())
	if err != nil {
		t.Fatalf("lock not released after an error: %v", err)
	}
	_ = lk.Release(context.Background())
}

// blockedBy only moves forward: a replica whose cache still shows an
// earlier execution active does not overwrite a later one another replica
// recorded.
func TestBlockedByNeverMovesBack(t *testing.T) {
	first := request("rr-first", worker1, 0)
	stale := execution(first, 2, v1alpha1.WorkflowRunning)
	rr := request("rr-b", worker1, time.Second)
	rr.Status.Phase = v1alpha1.PhaseBlocked
	rr.Status.BlockReason = v1alpha1.BlockReasonResourceBusy
	rr.Status.BlockedBy = ExecutionName(worker1, 3)
	e := newEnv(t, []client.Object{executing(first, stale), stale, rr})
	e.reconcile("rr-b")
	if n := e.writes.Load(); n != 0 {
		t.Fatalf("%d writes", n)
	}
	if got := e.getRR("rr-b").Status.BlockedBy; got != ExecutionName(worker1, 3) {
		t.Fatalf("blockedBy moved back to %s", got)
	}
}

// Reconciling B plans generation 1 for the earlier A. While this replica is
// paused before its create, A is deleted and another replica starts
// generation 1 for B itself (while reconciling some third request, so B's
// status is untouched). The create gets AlreadyExists on B's own execution:
// B must become Executing with it, not Blocked by it.
func TestFencedOnOwnExecutionAdopts(t *testing.T) {
	a := request("rr-a", worker1, 0)
	b := request("rr-b", worker1, time.Second)
	var e *env
	e = newEnv(t, []client.Object{a, b}, withOptions(func(o *Options) {
		o.BeforeCreate = func(ctx context.Context) {
			var cur v1alpha1.RemediationRequest
			if err := e.raw.Get(ctx, client.ObjectKeyFromObject(a), &cur); err != nil {
				t.Error(err)
				return
			}
			// A's deletion, finalized elsewhere (no execution yet).
			cur.Finalizers = nil
			if err := e.raw.Update(ctx, &cur); err != nil {
				t.Error(err)
			}
			if err := e.raw.Delete(ctx, &cur); err != nil {
				t.Error(err)
			}
			if err := e.raw.Create(ctx, execution(b, 1, v1alpha1.WorkflowRunning)); err != nil {
				t.Error(err)
			}
		}
	}))

	e.reconcile("rr-b")

	name := ExecutionName(worker1, 1)
	e.assertExecuting("rr-b", name)
	if ref := e.getRR("rr-b").Status.WorkflowExecutionRef; ref.UID != "uid-"+name {
		t.Fatalf("reference %+v, want the existing execution's UID", ref)
	}
	ws := e.executions()
	if len(ws) != 1 || ws[0].Spec.RemediationRequestRef.Name != "rr-b" {
		t.Fatalf("executions %+v, want only rr-b's", ws)
	}
	if evs := e.drainEvents(); hasEvent(evs, corev1.EventTypeNormal, "Blocked") {
		t.Fatalf("events %q: rr-b was reported Blocked on its own execution", evs)
	}
	if n := testutil.ToFloat64(e.rr.metrics.blocks.WithLabelValues(v1alpha1.BlockReasonResourceBusy)); n != 0 {
		t.Fatalf("blocks_total = %v, want 0", n)
	}
	if n := e.outcomes("request", outcomeFenced); n != 1 {
		t.Fatalf("fenced outcomes = %v, want 1", n)
	}
}

// When the reconciled request is not the earliest, the execution started is
// the earliest's, and the log line says so with keys that cannot be read as
// the reconciled request (which controller-runtime's logger carries as
// "name").
func TestStartedLogNamesBothRequests(t *testing.T) {
	early := request("rr-z-early", worker1, 0)
	late := request("rr-a-late", worker1, time.Second)
	e := newEnv(t, []client.Object{early, late})
	var lines []string
	log := funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{})
	// What controller-runtime's builder puts in the reconcile logger.
	log = log.WithValues("namespace", testNS, "name", "rr-a-late")
	ctx := logr.NewContext(context.Background(), log)
	if _, err := e.rr.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "rr-a-late"}}); err != nil {
		t.Fatal(err)
	}
	e.assertBlockedBy("rr-a-late", ExecutionName(worker1, 1))

	var started []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "started execution" {
			started = append(started, m)
		}
	}
	if len(started) != 1 {
		t.Fatalf("%d 'started execution' lines in %q, want 1", len(started), lines)
	}
	m := started[0]
	if m["startedFor"] != "rr-z-early" || m["reconciled"] != "rr-a-late" || m["execution"] != ExecutionName(worker1, 1) {
		t.Fatalf("started execution logged as %v, want startedFor rr-z-early, reconciled rr-a-late", m)
	}
	if _, ok := m["request"]; ok {
		t.Fatalf("ambiguous key \"request\" in %v", m)
	}
}

// The finalizer is added without the resourceVersion: a count update by
// the gateway between the uncached read and the patch does not make the
// start lose a round.
func TestFinalizerIgnoresConcurrentStatusUpdate(t *testing.T) {
	rr := request("rr-a", worker1, 0)
	rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 1, FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: rr.Spec.ReceivedAt}
	bumped := false
	e := newEnv(t, []client.Object{rr}, withInterceptor(func(e *env, fs *interceptor.Funcs) {
		fs.Patch = func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*v1alpha1.RemediationRequest); ok && !bumped {
				bumped = true
				var cur v1alpha1.RemediationRequest
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
					return err
				}
				cur.Status.Deduplication.OccurrenceCount++
				if err := c.Status().Update(ctx, &cur); err != nil {
					return err
				}
			}
			return c.Patch(ctx, obj, p, opts...)
		}
	}))

	e.reconcile("rr-a")

	if !bumped {
		t.Fatal("the test's concurrent update did not run")
	}
	e.assertExecuting("rr-a", ExecutionName(worker1, 1))
	got := e.getRR("rr-a")
	if !contains(got.Finalizers, v1alpha1.FinalizerCancelExecution) || got.Status.Deduplication.OccurrenceCount != 2 {
		t.Fatalf("finalizers %v, count %d: want the finalizer and the gateway's count 2", got.Finalizers, got.Status.Deduplication.OccurrenceCount)
	}
	if n := e.outcomes("request", outcomeConflict); n != 0 {
		t.Fatalf("%v conflict outcomes, want 0", n)
	}
}

// The finalizer patch is conditional on the request's UID and finalizers:
// it appends to the list it read, and refuses a request re-created under
// the same name or one whose finalizers changed since the read.
func TestFinalizerPatch(t *testing.T) {
	const other = "example.com/other"
	for _, tc := range []struct {
		name   string
		read   []string // finalizers of the copy the patch is built from
		stored []string // finalizers on the server
		uid    types.UID
		want   []string // nil: the patch is refused
	}{
		{"none", nil, nil, "", []string{v1alpha1.FinalizerCancelExecution}},
		{"appends", []string{other}, []string{other}, "", []string{other, v1alpha1.FinalizerCancelExecution}},
		{"re-created", nil, nil, "uid-someone-else", nil},
		{"finalizer added since the read", nil, []string{other}, "", nil},
		{"finalizer removed since the read", []string{other}, nil, "", nil},
		{"ours added since the read", nil, []string{v1alpha1.FinalizerCancelExecution}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := request("rr-a", worker1, 0)
			stored.Finalizers = tc.stored
			e := newEnv(t, []client.Object{stored})
			read := request("rr-a", worker1, 0)
			read.Finalizers = tc.read
			if tc.uid != "" {
				read.UID = tc.uid
			}
			p, err := finalizerPatch(read, v1alpha1.FinalizerCancelExecution)
			if err != nil {
				t.Fatal(err)
			}
			err = e.c.Patch(context.Background(), read, p)
			got := e.getRR("rr-a").Finalizers
			if tc.want == nil {
				if err == nil {
					t.Fatalf("patch accepted; finalizers now %v", got)
				}
				if !slices.Equal(got, tc.stored) {
					t.Fatalf("finalizers %v after a refused patch, want %v", got, tc.stored)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("finalizers %v, want %v", got, tc.want)
			}
		})
	}
}
