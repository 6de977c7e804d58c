package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// timeoutReconciler watches every active execution. It cancels one whose
// request no longer exists (reason RequestGone) and fails one that stays
// non-terminal past its deadline (reason TimedOut), so that neither a
// request deleted under a paused creator nor a crashed executor keeps a
// target busy. It needs no lock: it creates nothing, and its writes are
// optimistic, so an executor that finishes the execution at the same moment
// wins or loses cleanly (the loser sees a Conflict).
type timeoutReconciler struct {
	client client.Client
	// api reads the execution's request from the API server: the cache
	// may still hold a request that was deleted a moment ago.
	api     client.Reader
	events  events.EventRecorder
	opts    Options
	metrics *metrics
	seen    firstSeen
}

var _ reconcile.Reconciler = (*timeoutReconciler)(nil)

// Timeout is how long an execution may stay non-terminal: spec.timeout, or
// the default timeout if unset.
func Timeout(w *v1alpha1.WorkflowExecution, defaultTimeout time.Duration) time.Duration {
	if w.Spec.Timeout != nil {
		return w.Spec.Timeout.Duration
	}
	return defaultTimeout
}

// firstSeen remembers when this replica first saw each active execution,
// on its own clock. A deadline is counted from there, not from the
// execution's creationTimestamp: that is the API server's clock, and a
// replica whose clock runs ahead would fail every execution at once, freeing
// targets whose executions still run. Counting from the first sight errs
// the other way only: a replica that starts (or restarts) while an
// execution runs gives it a full timeout from then. Replicas that saw the
// creation fail it on time.
type firstSeen struct {
	mu   sync.Mutex
	seen map[types.NamespacedName]sighting
}

type sighting struct {
	uid types.UID
	at  time.Time
}

// at returns when w was first seen, recording now if it was not yet (or
// its name now belongs to another object).
func (f *firstSeen) at(w *v1alpha1.WorkflowExecution, now time.Time) time.Time {
	key := client.ObjectKeyFromObject(w)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[types.NamespacedName]sighting{}
	}
	s, ok := f.seen[key]
	if !ok || s.uid != w.UID {
		s = sighting{uid: w.UID, at: now}
		f.seen[key] = s
	}
	return s.at
}

// forget drops an execution that ended or is gone, so the map holds active
// executions only.
func (f *firstSeen) forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.seen, key)
}

func (t *timeoutReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	rs := t.reconcile(ctx, req)
	t.metrics.reconciles.WithLabelValues("timeout", string(rs.out)).Inc()
	return rs.res, rs.err
}

func (t *timeoutReconciler) reconcile(ctx context.Context, req reconcile.Request) result {
	if req.Namespace != t.opts.Namespace {
		return done(outcomeUnchanged)
	}
	var w v1alpha1.WorkflowExecution
	if err := t.client.Get(ctx, req.NamespacedName, &w); err != nil {
		if apierrors.IsNotFound(err) {
			t.seen.forget(req.NamespacedName)
			return done(outcomeUnchanged)
		}
		return failed(fmt.Errorf("get execution %s: %w", req.Name, err))
	}
	if w.IsTerminal() {
		t.seen.forget(req.NamespacedName)
		return done(outcomeUnchanged)
	}
	ctx = logr.NewContext(ctx, logr.FromContextOrDiscard(ctx).WithValues("replica", t.opts.Identity))
	if rs, ok := t.orphan(ctx, &w); ok {
		return rs
	}
	timeout := Timeout(&w, t.opts.DefaultTimeout)
	now := t.opts.now()
	deadline := t.seen.at(&w, now).Add(timeout)
	if now.Before(deadline) {
		return result{res: reconcile.Result{RequeueAfter: deadline.Sub(now)}, out: outcomeNotYetDue}
	}
	msg := fmt.Sprintf("not finished within %v of when orchestrator replica %s first saw it; failed by that replica", timeout, t.opts.Identity)
	// Based on the cached copy: if the cache is stale (the executor
	// finished it), the resourceVersion is too and the write is refused.
	if err := writeExecutionStatus(ctx, t.client, &w, v1alpha1.WorkflowFailed, ReasonTimedOut, msg, metav1.NewTime(now)); err != nil {
		return t.settle(err)
	}
	logr.FromContextOrDiscard(ctx).Info("execution timed out", "execution", w.Name, "timeout", timeout)
	t.events.Eventf(t.regarding(ctx, &w), &w, corev1.EventTypeWarning, ReasonTimedOut, "TimeOut",
		"WorkflowExecution %s %s", w.Name, msg)
	return done(outcomeTimedOut)
}

// orphan cancels active execution w if its request no longer exists, and
// reports whether it decided anything (ok), in which case rs is the result.
//
// A replica paused between its last lock check and its create can land an
// execution after its request was deleted and finalized: finalize, under
// the lock, found no execution to cancel and let the request go. The
// execution's creation is an event for this controller, keyed by
// execution, so this is where such an orphan is seen even if its target
// has no other request. A request being deleted that still has the
// finalizer is looked at again shortly: its finalize either cancels w or,
// having listed before w existed, lets the request go, which the next look
// sees. One being deleted without the finalizer was already finalized.
func (t *timeoutReconciler) orphan(ctx context.Context, w *v1alpha1.WorkflowExecution) (rs result, ok bool) {
	ref := w.Spec.RemediationRequestRef
	var rr v1alpha1.RemediationRequest
	err := t.api.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: ref.Name}, &rr)
	live := err == nil && string(rr.UID) == ref.UID
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return failed(fmt.Errorf("get request %s of execution %s: %w", ref.Name, w.Name, err)), true
	case live && rr.DeletionTimestamp.IsZero():
		return result{}, false
	case live && controllerutil.ContainsFinalizer(&rr, v1alpha1.FinalizerCancelExecution):
		return result{res: reconcile.Result{RequeueAfter: t.opts.requeueDelay()}, out: outcomeUnchanged}, true
	}
	// NotFound, the name now belongs to another request, or finalized.
	why := "its RemediationRequest " + ref.Name + " no longer exists"
	if err := cancelExecution(ctx, t.client, t.opts, w, ReasonRequestGone, why); err != nil {
		return t.settle(err), true
	}
	t.events.Eventf(w, nil, corev1.EventTypeNormal, string(v1alpha1.PhaseCancelled), "Cancel",
		"cancelled WorkflowExecution %s because %s (by %s)", w.Name, why, t.opts.Identity)
	return done(outcomeCancelled), true
}

// settle turns an execution status write's error into a result: a
// Conflict (the executor wrote first) is re-examined after a short delay,
// NotFound (the execution is gone) needs nothing more.
func (t *timeoutReconciler) settle(err error) result {
	switch {
	case apierrors.IsConflict(err):
		return result{res: reconcile.Result{RequeueAfter: t.opts.requeueDelay()}, out: outcomeConflict}
	case apierrors.IsNotFound(err):
		return done(outcomeUnchanged)
	}
	return failed(err)
}

// regarding is the object a timeout Event is about: the execution's
// request, so that `kubectl describe` of the request shows it, or the
// execution itself if the request is gone.
func (t *timeoutReconciler) regarding(ctx context.Context, w *v1alpha1.WorkflowExecution) runtime.Object {
	var rr v1alpha1.RemediationRequest
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Spec.RemediationRequestRef.Name}
	if err := t.client.Get(ctx, key, &rr); err == nil && string(rr.UID) == w.Spec.RemediationRequestRef.UID {
		return &rr
	}
	return w
}
