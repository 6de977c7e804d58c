package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
)

// requestReconciler turns RemediationRequests into WorkflowExecutions, at
// most one active per target. See the package documentation for the
// protocol.
type requestReconciler struct {
	// client writes, and reads where a stale answer only delays a decision
	// (the manager's cache).
	client client.Client
	// api reads from the API server, for every decision that a stale
	// answer would make wrong.
	api     client.Reader
	events  events.EventRecorder
	opts    Options
	metrics *metrics
}

var _ reconcile.Reconciler = (*requestReconciler)(nil)

// result is what one step of a reconcile decided.
type result struct {
	res reconcile.Result
	out outcome
	err error
}

func done(out outcome) result { return result{out: out} }

func failed(err error) result { return result{out: outcomeError, err: err} }

// Reconcile never waits: contention and lost races return RequeueAfter.
func (r *requestReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := r.opts.Clock.Now()
	rs := r.reconcile(ctx, req)
	r.metrics.reconciles.WithLabelValues("request", string(rs.out)).Inc()
	logr.FromContextOrDiscard(ctx).V(2).Info("reconciled", "replica", r.opts.Identity, "outcome", rs.out,
		"requeueAfter", rs.res.RequeueAfter, "took", r.opts.Clock.Since(start))
	return rs.res, rs.err
}

func (r *requestReconciler) reconcile(ctx context.Context, req reconcile.Request) result {
	if req.Namespace != r.opts.Namespace {
		return done(outcomeUnchanged)
	}
	var rr v1alpha1.RemediationRequest
	if err := r.client.Get(ctx, req.NamespacedName, &rr); err != nil {
		if apierrors.IsNotFound(err) {
			return done(outcomeUnchanged)
		}
		return failed(fmt.Errorf("get request %s: %w", req.Name, err))
	}
	ctx = logr.NewContext(ctx, logr.FromContextOrDiscard(ctx).WithValues("replica", r.opts.Identity, "target", rr.Spec.Target.String()))
	switch {
	case !rr.DeletionTimestamp.IsZero():
		return r.finalize(ctx, &rr)
	case rr.IsTerminal():
		return r.dropFinalizer(ctx, &rr)
	case rr.EffectivePhase() == v1alpha1.PhaseExecuting && rr.Status.WorkflowExecutionRef != nil:
		return r.follow(ctx, &rr)
	default:
		return r.start(ctx, &rr)
	}
}

// settle turns a write error into a result. A Conflict means a write based
// on a stale copy lost a race (to another replica, to the gateway's
// deduplication update, to the executor), NotFound that the object went
// away: either way nothing was written, and the request is re-examined
// after a short jittered delay rather than with the controller's growing
// error backoff.
func (r *requestReconciler) settle(ctx context.Context, err error) result {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		logr.FromContextOrDiscard(ctx).V(1).Info("write lost a race; requeueing", "err", err.Error())
		return result{res: reconcile.Result{RequeueAfter: r.opts.requeueDelay()}, out: outcomeConflict}
	}
	return failed(err)
}

// follow handles an Executing request: it moves the request to the
// terminal phase matching its execution's once that finishes. No lock is
// needed: nothing is created, and the status write is optimistic.
func (r *requestReconciler) follow(ctx context.Context, rr *v1alpha1.RemediationRequest) result {
	ref := rr.Status.WorkflowExecutionRef
	key := types.NamespacedName{Namespace: rr.Namespace, Name: ref.Name}
	var w v1alpha1.WorkflowExecution
	err := r.client.Get(ctx, key, &w)
	if apierrors.IsNotFound(err) {
		// The cache may not have seen an execution created a moment ago.
		err = r.api.Get(ctx, key, &w)
	}
	switch {
	case apierrors.IsNotFound(err):
		return r.finish(ctx, rr, nil)
	case err != nil:
		return failed(fmt.Errorf("get execution %s: %w", ref.Name, err))
	case ref.UID != "" && string(w.UID) != ref.UID:
		// Same name, another object: ours was deleted.
		return r.finish(ctx, rr, nil)
	case !w.IsTerminal():
		return done(outcomeUnchanged)
	}
	return r.finish(ctx, rr, &w)
}

// terminalPhase maps a finished execution (nil: missing) to the request's
// phase and the reason and message to record.
func terminalPhase(w *v1alpha1.WorkflowExecution) (v1alpha1.RemediationPhase, string, string) {
	if w == nil {
		return v1alpha1.PhaseFailed, ReasonExecutionMissing, "the WorkflowExecution was deleted before it finished"
	}
	var phase v1alpha1.RemediationPhase
	switch w.EffectivePhase() {
	case v1alpha1.WorkflowCompleted:
		phase = v1alpha1.PhaseCompleted
	case v1alpha1.WorkflowCancelled:
		phase = v1alpha1.PhaseCancelled
	default:
		phase = v1alpha1.PhaseFailed
	}
	reason := safeReason(w.Status.Reason, string(w.EffectivePhase()))
	msg := fmt.Sprintf("WorkflowExecution %s %s", w.Name, w.EffectivePhase())
	if w.Status.Reason != "" {
		msg += " (" + w.Status.Reason + ")"
	}
	if w.Status.Message != "" {
		msg += ": " + w.Status.Message
	}
	return phase, reason, msg
}

// finish moves rr to the terminal phase matching w, then drops the
// finalizer: a terminal request has nothing left to cancel.
func (r *requestReconciler) finish(ctx context.Context, rr *v1alpha1.RemediationRequest, w *v1alpha1.WorkflowExecution) result {
	phase, reason, msg := terminalPhase(w)
	changed, err := r.writeStatus(ctx, rr, func(st *v1alpha1.RemediationRequestStatus) {
		st.Phase = phase
		st.BlockReason = ""
		st.BlockedBy = ""
		if w != nil {
			st.WorkflowExecutionRef = &v1alpha1.ObjectReference{Name: w.Name, UID: string(w.UID)}
		}
		r.setCondition(st, rr.Generation, ConditionExecuting, metav1.ConditionFalse, reason, msg)
		r.setCondition(st, rr.Generation, ConditionFinished, metav1.ConditionTrue, reason, msg)
	})
	if err != nil {
		return r.settle(ctx, err)
	}
	if changed {
		typ := corev1.EventTypeNormal
		if phase == v1alpha1.PhaseFailed {
			typ = corev1.EventTypeWarning
		}
		r.events.Eventf(rr, eventRelated(w), typ, string(phase), "Finish", "%s (recorded by %s)", msg, r.opts.Identity)
		logr.FromContextOrDiscard(ctx).Info("request finished", "phase", phase, "reason", reason)
	}
	rs := r.dropFinalizer(ctx, rr)
	if changed && rs.out == outcomeUnchanged {
		rs.out = outcomeFinished
	}
	return rs
}

// eventRelated avoids passing a typed nil as the related object.
func eventRelated(w *v1alpha1.WorkflowExecution) runtime.Object {
	if w == nil {
		return nil
	}
	return w
}

// dropFinalizer removes the finalizer from a terminal request, so that
// deleting it (retention, a human) needs no orchestrator.
func (r *requestReconciler) dropFinalizer(ctx context.Context, rr *v1alpha1.RemediationRequest) result {
	if !controllerutil.ContainsFinalizer(rr, v1alpha1.FinalizerCancelExecution) {
		return done(outcomeUnchanged)
	}
	base := rr.DeepCopy()
	controllerutil.RemoveFinalizer(rr, v1alpha1.FinalizerCancelExecution)
	if err := r.client.Patch(ctx, rr, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return done(outcomeUnchanged)
		}
		return r.settle(ctx, fmt.Errorf("remove finalizer from request %s: %w", rr.Name, err))
	}
	return done(outcomeFinished)
}

// addFinalizer adds FinalizerCancelExecution to rr with a JSON patch that
// is conditional on rr's UID and finalizers as read, not on its
// resourceVersion. During a storm the gateway updates the request's
// occurrence count many times a second; a patch carrying the
// resourceVersion would lose most races to those updates, and each loss
// delays the first execution by a requeue. What the resourceVersion
// protected is kept: the UID test refuses a request deleted and re-created
// under the same name; the finalizers test refuses a concurrent change of
// the finalizers, so that no other writer's finalizer is lost and ours is
// never added twice; and the API server refuses a new finalizer on an
// object whose deletion has started (Invalid), so a request being deleted
// since the read does not get it either (the integration tests check this
// on the real API server). A failed test is Invalid too. On success rr is
// what the server returned.
func (r *requestReconciler) addFinalizer(ctx context.Context, rr *v1alpha1.RemediationRequest) error {
	p, err := finalizerPatch(rr, v1alpha1.FinalizerCancelExecution)
	if err == nil {
		err = r.client.Patch(ctx, rr, p)
	}
	if err != nil {
		return fmt.Errorf("add finalizer to request %s: %w", rr.Name, err)
	}
	return nil
}

// jsonPatchOp is one operation of a JSON patch (RFC 6902).
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// finalizerPatch is the JSON patch that appends finalizer to obj's
// finalizers, provided obj still has its UID and exactly its finalizers.
func finalizerPatch(obj client.Object, finalizer string) (client.Patch, error) {
	ops := []jsonPatchOp{{Op: "test", Path: "/metadata/uid", Value: obj.GetUID()}}
	if fs := obj.GetFinalizers(); len(fs) == 0 {
		// The API server never stores an empty list: the field is
		// absent, which a test against null matches.
		ops = append(ops,
			jsonPatchOp{Op: "test", Path: "/metadata/finalizers", Value: nil},
			jsonPatchOp{Op: "add", Path: "/metadata/finalizers", Value: []string{finalizer}})
	} else {
		ops = append(ops,
			jsonPatchOp{Op: "test", Path: "/metadata/finalizers", Value: fs},
			jsonPatchOp{Op: "add", Path: "/metadata/finalizers/-", Value: finalizer})
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode finalizer patch: %w", err)
	}
	return client.RawPatch(types.JSONPatchType, data), nil
}

// start handles a Pending or Blocked request: under the target's lock, it
// either starts the next execution of the target or records why the
// request waits.
func (r *requestReconciler) start(ctx context.Context, rr *v1alpha1.RemediationRequest) result {
	// The uncached reads below find the target's requests by the target
	// label, which the gateway sets; a request without it gets it here.
	if label := v1alpha1.TargetLabelValue(rr.Spec.Target); rr.Labels[v1alpha1.LabelTarget] != label {
		base := rr.DeepCopy()
		if rr.Labels == nil {
			rr.Labels = map[string]string{}
		}
		rr.Labels[v1alpha1.LabelTarget] = label
		if err := r.client.Patch(ctx, rr, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsNotFound(err) {
				return done(outcomeUnchanged)
			}
			return r.settle(ctx, fmt.Errorf("label request %s: %w", rr.Name, err))
		}
	}

	if rs, ok := r.fromCache(ctx, rr); ok {
		return rs
	}

	lk, err := r.opts.Locker.TryAcquire(ctx, rr.Spec.Target.LockKey())
	if errors.Is(err, lease.ErrHeld) {
		return result{res: reconcile.Result{RequeueAfter: r.opts.requeueDelay()}, out: outcomeContended}
	}
	if err != nil {
		return failed(fmt.Errorf("lock target %s: %w", rr.Spec.Target, err))
	}
	defer r.release(ctx, lk)
	return r.startLocked(ctx, lk, rr)
}

// fromCache decides what needs no lock, from the cache: recording an
// execution that already exists for rr, and waiting while another request's
// execution is active. Neither creates anything, and both are safe on stale
// data: a status write based on a stale copy of rr is refused (Conflict),
// and an execution the cache still shows active has its end delivered as
// an event after the cache is updated, which wakes rr again. Only "the
// target looks free" goes to the lock and the uncached reads; so does an
// active execution whose request the cache does not have, in case it is an
// orphan to cancel. ok is false when the lock is needed.
func (r *requestReconciler) fromCache(ctx context.Context, rr *v1alpha1.RemediationRequest) (rs result, ok bool) {
	var wfes v1alpha1.WorkflowExecutionList
	err := r.client.List(ctx, &wfes, client.InNamespace(rr.Namespace),
		client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(rr.Spec.Target)})
	if err != nil {
		return result{}, false
	}
	v := &targetView{executions: wfes.Items}
	if w := v.executionOf(rr.UID); w != nil {
		return r.adopt(ctx, rr, w), true
	}
	active := v.active()
	if len(active) == 0 {
		return result{}, false
	}
	// Normally there is one; with a stale cache the highest sequence is
	// the likelier to be still active.
	w := active[len(active)-1]
	if rr.EffectivePhase() == v1alpha1.PhaseBlocked && sequenceOf(rr.Status.BlockedBy) > w.Spec.Sequence {
		// Another replica, with a fresher view, already named a later
		// execution: this cache is behind, and its own events will wake
		// rr again. Moving blockedBy back would only make replicas with
		// differently stale caches overwrite each other.
		return result{res: reconcile.Result{RequeueAfter: r.opts.BlockedResync}, out: outcomeUnchanged}, true
	}
	var owner v1alpha1.RemediationRequest
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Spec.RemediationRequestRef.Name}
	if err := r.client.Get(ctx, key, &owner); err != nil || string(owner.UID) != w.Spec.RemediationRequestRef.UID {
		return result{}, false
	}
	return r.block(ctx, rr, w), true
}

// release ends the lock. Its errors change nothing for the request: a lock
// that was lost or could not be deleted expires by itself.
func (r *requestReconciler) release(ctx context.Context, lk *lease.Lock) {
	if err := lk.Release(ctx); err != nil {
		logr.FromContextOrDiscard(ctx).V(1).Info("releasing the target lock failed", "err", err.Error())
	}
}

// readTarget reads a target's executions and then its requests from the
// API server; see targetView for why in that order.
func (r *requestReconciler) readTarget(ctx context.Context, t v1alpha1.TargetRef) (*targetView, error) {
	sel := client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(t)}
	var wfes v1alpha1.WorkflowExecutionList
	if err := r.api.List(ctx, &wfes, client.InNamespace(r.opts.Namespace), sel); err != nil {
		return nil, fmt.Errorf("list executions of %s: %w", t, err)
	}
	var rrs v1alpha1.RemediationRequestList
	if err := r.api.List(ctx, &rrs, client.InNamespace(r.opts.Namespace), sel); err != nil {
		return nil, fmt.Errorf("list requests of %s: %w", t, err)
	}
	return &targetView{executions: wfes.Items, requests: rrs.Items}, nil
}

// startLocked runs with the target's lock held. Every read is uncached:
// the lock serialises the replicas' decisions only if each decision sees
// the writes of the previous holder.
func (r *requestReconciler) startLocked(ctx context.Context, lk *lease.Lock, cached *v1alpha1.RemediationRequest) result {
	log := logr.FromContextOrDiscard(ctx)
	// Reads run under the lock's context: if the lock is lost meanwhile
	// they fail, and the request is simply retried.
	v, err := r.readTarget(lk.Context(), cached.Spec.Target)
	if err != nil {
		return failed(err)
	}
	self := v.request(cached.UID)
	switch {
	case self == nil:
		// Deleted since the cache saw it (the label is ours and set
		// above, so a live request is always listed).
		return done(outcomeUnchanged)
	case !self.DeletionTimestamp.IsZero() || self.IsTerminal():
		return done(outcomeUnchanged)
	}
	if w := v.executionOf(self.UID); w != nil {
		// Started before: by an earlier reconcile whose status write did
		// not happen, or by another request's reconcile on our behalf.
		return r.adopt(ctx, self, w)
	}

	var blocking *v1alpha1.WorkflowExecution
	for _, a := range v.active() {
		gone, err := r.orphaned(ctx, v, a)
		if err != nil {
			return failed(err)
		}
		if !gone {
			blocking = a
			break
		}
		if err := r.cancel(ctx, a, ReasonRequestGone, "its RemediationRequest no longer exists"); err != nil {
			return r.settle(ctx, err)
		}
	}
	if blocking != nil {
		return r.block(ctx, self, blocking)
	}

	head := v.head() // not nil: self qualifies
	// The finalizer goes on before the execution exists, so that the
	// request's deletion always passes through finalize. It is added under
	// the lock, conditioned on the UID and finalizers of the fresh copy but
	// not on its resourceVersion (see addFinalizer): a request deleted
	// meanwhile refuses it (NotFound, or Invalid once deleting).
	if !controllerutil.ContainsFinalizer(head, v1alpha1.FinalizerCancelExecution) {
		if err := r.addFinalizer(ctx, head); err != nil {
			return r.settle(ctx, err)
		}
	}

	// The next execution goes to the earliest request, whichever request's
	// reconcile got here: this keeps arrival order, and a target's queue
	// moves on as soon as any of its requests is reconciled.
	w := newExecution(head, v.latestSequence()+1, lk.Token(), r.opts)
	if err := lk.Err(); err != nil {
		// Lost before the write: nothing was created; another holder
		// decides now.
		log.V(1).Info("target lock lost before the create", "err", err.Error())
		return result{res: reconcile.Result{RequeueAfter: r.opts.requeueDelay()}, out: outcomeContended}
	}
	// Between the check above and the create below a process can always
	// be paused past its lease; the name, not the lock, is the fence. The
	// create therefore runs on the reconcile's context, not the lock's: a
	// replica that resumes sends it, and the name decides.
	r.testPause(ctx)
	err = r.client.Create(ctx, w)
	switch {
	case err == nil:
		// The logger carries the reconciled request (self) under
		// controller-runtime's keys; the execution may be head's.
		log.Info("started execution", "execution", w.Name, "startedFor", head.Name, "reconciled", self.Name,
			"sequence", w.Spec.Sequence, "token", w.Spec.FencingToken)
		r.events.Eventf(head, w, corev1.EventTypeNormal, ReasonStarted, "Start",
			"started WorkflowExecution %s (sequence %d, fencing token %s) on %s, by %s",
			w.Name, w.Spec.Sequence, w.Spec.FencingToken, head.Spec.Target, r.opts.Identity)
		if head.UID == self.UID {
			return r.markExecuting(ctx, self, w, outcomeStarted)
		}
		rs := r.block(ctx, self, w)
		if rs.err == nil && rs.out == outcomeBlocked {
			rs.out = outcomeStarted
		}
		return rs
	case apierrors.IsAlreadyExists(err):
		return r.fenced(ctx, self, head, w.Name)
	default:
		return failed(fmt.Errorf("create execution %s: %w", w.Name, err))
	}
}

// fenced handles a create that found the name taken: another replica
// started this generation of the target since our read (typically, we were
// paused past our lease). We re-read and wait; we never create another.
func (r *requestReconciler) fenced(ctx context.Context, self, head *v1alpha1.RemediationRequest, name string) result {
	log := logr.FromContextOrDiscard(ctx)
	var existing v1alpha1.WorkflowExecution
	if err := r.api.Get(ctx, types.NamespacedName{Namespace: self.Namespace, Name: name}, &existing); err != nil {
		return failed(fmt.Errorf("get execution %s after AlreadyExists: %w", name, err))
	}
	switch existing.Spec.RemediationRequestRef.UID {
	case string(self.UID):
		// self's own execution, whoever created it: our earlier create
		// whose response was lost (head is self), or, when the execution
		// was planned for an earlier head, one that another replica
		// started for self since our read (typically, head was deleted
		// meanwhile).
		// Either way self runs; waiting on it would block self on itself.
		rs := r.adopt(ctx, self, &existing)
		if rs.err == nil && head.UID != self.UID {
			rs.out = outcomeFenced
		}
		return rs
	case string(head.UID):
		// Our own earlier create for head, whose response was lost:
		// success, and self waits for it.
		return r.block(ctx, self, &existing)
	}
	log.Info("execution name already taken by another request; not starting", "execution", name,
		"plannedFor", head.Name, "reconciled", self.Name,
		"takenBy", existing.Spec.RemediationRequestRef.Name, "takenWithToken", existing.Spec.FencingToken)
	if existing.IsTerminal() {
		return result{res: reconcile.Result{RequeueAfter: r.opts.requeueDelay()}, out: outcomeFenced}
	}
	rs := r.block(ctx, self, &existing)
	if rs.err == nil {
		rs.out = outcomeFenced
	}
	return rs
}

// adopt records an execution that already exists for self.
func (r *requestReconciler) adopt(ctx context.Context, self *v1alpha1.RemediationRequest, w *v1alpha1.WorkflowExecution) result {
	if w.IsTerminal() {
		return r.finish(ctx, self, w)
	}
	return r.markExecuting(ctx, self, w, outcomeUnchanged)
}

// markExecuting records that self's execution w exists.
func (r *requestReconciler) markExecuting(ctx context.Context, self *v1alpha1.RemediationRequest, w *v1alpha1.WorkflowExecution, out outcome) result {
	from := self.EffectivePhase()
	msg := fmt.Sprintf("WorkflowExecution %s (sequence %d) runs on %s", w.Name, w.Spec.Sequence, w.Spec.Target)
	_, err := r.writeStatus(ctx, self, func(st *v1alpha1.RemediationRequestStatus) {
		st.Phase = v1alpha1.PhaseExecuting
		st.BlockReason = ""
		st.BlockedBy = ""
		st.WorkflowExecutionRef = &v1alpha1.ObjectReference{Name: w.Name, UID: string(w.UID)}
		if meta.FindStatusCondition(st.Conditions, ConditionBlocked) != nil {
			r.setCondition(st, self.Generation, ConditionBlocked, metav1.ConditionFalse, ReasonStarted, "no longer waiting: "+msg)
		}
		r.setCondition(st, self.Generation, ConditionExecuting, metav1.ConditionTrue, ReasonStarted, msg)
	})
	if err != nil {
		return r.settle(ctx, err)
	}
	if from != v1alpha1.PhaseExecuting {
		r.metrics.pendingToExecute.Observe(r.opts.now().Sub(self.CreationTimestamp.Time).Seconds())
		if out == outcomeUnchanged {
			out = outcomeStarted
		}
	}
	return done(out)
}

// block records that self waits for w, and requeues it for the slow
// safety re-examination; the normal wake-up is w's own event.
func (r *requestReconciler) block(ctx context.Context, self *v1alpha1.RemediationRequest, w *v1alpha1.WorkflowExecution) result {
	msg := fmt.Sprintf("waiting for WorkflowExecution %s (request %s), active on %s",
		w.Name, w.Spec.RemediationRequestRef.Name, w.Spec.Target)
	prevPhase := self.EffectivePhase()
	changed, err := r.writeStatus(ctx, self, func(st *v1alpha1.RemediationRequestStatus) {
		st.Phase = v1alpha1.PhaseBlocked
		st.BlockReason = v1alpha1.BlockReasonResourceBusy
		st.BlockedBy = w.Name
		st.WorkflowExecutionRef = nil
		r.setCondition(st, self.Generation, ConditionBlocked, metav1.ConditionTrue, ReasonResourceBusy, msg)
	})
	if err != nil {
		return r.settle(ctx, err)
	}
	// One Event per wait, not per change of the blocking execution: the
	// condition carries the current one.
	if changed && prevPhase != v1alpha1.PhaseBlocked {
		r.metrics.blocks.WithLabelValues(v1alpha1.BlockReasonResourceBusy).Inc()
		r.events.Eventf(self, w, corev1.EventTypeNormal, "Blocked", "Block", "%s (decided by %s)", msg, r.opts.Identity)
	}
	out := outcomeBlocked
	if !changed {
		out = outcomeUnchanged
	}
	return result{res: reconcile.Result{RequeueAfter: r.opts.BlockedResync}, out: out}
}

// orphaned reports whether active execution a belongs to a request that no
// longer exists. The list in v was read after the executions, so absence
// there is strong evidence; a Get by name confirms it, so that a request
// that merely lost its target label never has its execution cancelled.
func (r *requestReconciler) orphaned(ctx context.Context, v *targetView, a *v1alpha1.WorkflowExecution) (bool, error) {
	if v.request(types.UID(a.Spec.RemediationRequestRef.UID)) != nil {
		return false, nil
	}
	var rr v1alpha1.RemediationRequest
	err := r.api.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.RemediationRequestRef.Name}, &rr)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("get request %s of execution %s: %w", a.Spec.RemediationRequestRef.Name, a.Name, err)
	}
	return string(rr.UID) != a.Spec.RemediationRequestRef.UID, nil
}

// cancel ends an active execution as Cancelled.
func (r *requestReconciler) cancel(ctx context.Context, w *v1alpha1.WorkflowExecution, reason, why string) error {
	return cancelExecution(ctx, r.client, r.opts, w, reason, why)
}

// cancelExecution ends active execution w as Cancelled with reason, by an
// optimistic write (see writeExecutionStatus): an executor that finished w
// meanwhile wins, and the caller gets a Conflict.
func cancelExecution(ctx context.Context, c client.Client, opts Options, w *v1alpha1.WorkflowExecution, reason, why string) error {
	msg := fmt.Sprintf("cancelled by orchestrator replica %s: %s", opts.Identity, why)
	if err := writeExecutionStatus(ctx, c, w, v1alpha1.WorkflowCancelled, reason, msg, metav1.NewTime(opts.now())); err != nil {
		return err
	}
	// The logger may carry another request (the reconciled one) under
	// controller-runtime's keys: name the execution's own explicitly.
	logr.FromContextOrDiscard(ctx).Info("cancelled execution", "execution", w.Name,
		"executionOf", w.Spec.RemediationRequestRef.Name, "reason", reason)
	return nil
}

// finalize handles the deletion of a request: under the target's lock (so
// that no replica is between its check and its create for this request),
// it cancels the request's active execution, then lets the request go. The
// cancellation is an execution event, which wakes the target's other
// requests.
func (r *requestReconciler) finalize(ctx context.Context, rr *v1alpha1.RemediationRequest) result {
	if !controllerutil.ContainsFinalizer(rr, v1alpha1.FinalizerCancelExecution) {
		return done(outcomeUnchanged)
	}
	lk, err := r.opts.Locker.TryAcquire(ctx, rr.Spec.Target.LockKey())
	if errors.Is(err, lease.ErrHeld) {
		return result{res: reconcile.Result{RequeueAfter: r.opts.requeueDelay()}, out: outcomeContended}
	}
	if err != nil {
		return failed(fmt.Errorf("lock target %s: %w", rr.Spec.Target, err))
	}
	defer r.release(ctx, lk)

	v, err := r.readTarget(lk.Context(), rr.Spec.Target)
	if err != nil {
		return failed(err)
	}
	for i := range v.executions {
		w := &v.executions[i]
		if w.Spec.RemediationRequestRef.UID != string(rr.UID) || w.IsTerminal() {
			continue
		}
		if err := r.cancel(ctx, w, ReasonRequestDeleted, "its RemediationRequest "+rr.Name+" is being deleted"); err != nil {
			return r.settle(ctx, err)
		}
		r.events.Eventf(rr, w, corev1.EventTypeNormal, string(v1alpha1.PhaseCancelled), "Cancel",
			"cancelled WorkflowExecution %s because the request is being deleted (by %s)", w.Name, r.opts.Identity)
	}
	self := v.request(rr.UID)
	if self == nil {
		// Not listed by the target label (a human removed it): read it by
		// name, so that its finalizer is removed all the same.
		self = &v1alpha1.RemediationRequest{}
		if err := r.api.Get(ctx, client.ObjectKeyFromObject(rr), self); err != nil {
			if apierrors.IsNotFound(err) {
				return done(outcomeUnchanged)
			}
			return failed(fmt.Errorf("get request %s: %w", rr.Name, err))
		}
	}
	base := self.DeepCopy()
	controllerutil.RemoveFinalizer(self, v1alpha1.FinalizerCancelExecution)
	if err := r.client.Patch(ctx, self, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return done(outcomeCancelled)
		}
		return r.settle(ctx, fmt.Errorf("remove finalizer from request %s: %w", rr.Name, err))
	}
	return done(outcomeCancelled)
}

// testPause runs the test hooks between the last lock check and the
// create. Both are off by default.
func (r *requestReconciler) testPause(ctx context.Context) {
	if d := r.opts.CheckToCreateDelay; d > 0 {
		t := r.opts.Clock.NewTimer(d)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
		}
	}
	if f := r.opts.BeforeCreate; f != nil {
		f(ctx)
	}
}
