package orchestrator

import (
	"context"
	"fmt"
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
}

var _ reconcile.Reconciler = (*timeoutReconciler)(nil)

// Deadline is when an execution that is still non-terminal gets failed:
// its creation time plus spec.timeout (the default timeout if unset). It
// counts from creation, not from startedAt, because spec.timeout bounds how
// long the execution may keep its target busy, and it is busy from
// creation. Creation time is the API server's clock, compared with the
// replica's: skew between them moves the deadline by that much.
func Deadline(w *v1alpha1.WorkflowExecution, defaultTimeout time.Duration) time.Time {
	timeout := defaultTimeout
	if w.Spec.Timeout != nil {
		timeout = w.Spec.Timeout.Duration
	}
	return w.CreationTimestamp.Add(timeout)
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
			return done(outcomeUnchanged)
		}
		return failed(fmt.Errorf("get execution %s: %w", req.Name, err))
	}
	if w.IsTerminal() {
		return done(outcomeUnchanged)
	}
	ctx = logr.NewContext(ctx, logr.FromContextOrDiscard(ctx).WithValues("replica", t.opts.Identity))
	if rs, ok := t.orphan(ctx, &w); ok {
		return rs
	}
	deadline := Deadline(&w, t.opts.DefaultTimeout)
	now := t.opts.now()
	if now.Before(deadline) {
		return result{res: reconcile.Result{RequeueAfter: deadline.Sub(now)}, out: outcomeNotYetDue}
	}
	timeout := deadline.Sub(w.CreationTimestamp.Time)
	msg := fmt.Sprintf("not finished within %v of its creation; failed by orchestrator replica %s", timeout, t.opts.Identity)
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
