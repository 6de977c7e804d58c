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
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// timeoutReconciler fails executions that stay non-terminal past their
// deadline, so that a crashed executor cannot keep a target busy forever.
// It needs no lock: it creates nothing, and its write is optimistic, so an
// executor that finishes the execution at the same moment wins or loses
// cleanly (the loser sees a Conflict).
type timeoutReconciler struct {
	client  client.Client
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
		if apierrors.IsConflict(err) {
			return result{res: reconcile.Result{RequeueAfter: t.opts.requeueDelay()}, out: outcomeConflict}
		}
		if apierrors.IsNotFound(err) {
			return done(outcomeUnchanged)
		}
		return failed(err)
	}
	logr.FromContextOrDiscard(ctx).Info("execution timed out", "replica", t.opts.Identity, "execution", w.Name, "timeout", timeout)
	t.events.Eventf(t.regarding(ctx, &w), &w, corev1.EventTypeWarning, ReasonTimedOut, "TimeOut",
		"WorkflowExecution %s %s", w.Name, msg)
	return done(outcomeTimedOut)
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
