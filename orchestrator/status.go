package orchestrator

import (
	"context"
	"fmt"
	"regexp"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Condition types the orchestrator writes on a RemediationRequest, so that
// `kubectl describe` explains where it is and why.
const (
	// ConditionBlocked is True while the request waits for another
	// execution on its target (reason ResourceBusy), and False once its own
	// execution started (reason Started).
	ConditionBlocked = "Blocked"
	// ConditionExecuting is True while the request's execution runs
	// (reason Started) and False once it finished (reason: the
	// execution's).
	ConditionExecuting = "Executing"
	// ConditionFinished is True once the request reached a terminal phase;
	// its reason is the execution's (Completed, TimedOut, RequestDeleted,
	// ...).
	ConditionFinished = "Finished"
)

// Reasons the orchestrator writes into conditions, execution status and
// Events.
const (
	ReasonResourceBusy = v1alpha1.BlockReasonResourceBusy
	ReasonStarted      = "Started"
	// ReasonTimedOut: the execution stayed non-terminal past its timeout
	// and the orchestrator failed it.
	ReasonTimedOut = "TimedOut"
	// ReasonRequestDeleted: the request was deleted while its execution
	// was active; the orchestrator cancelled the execution.
	ReasonRequestDeleted = "RequestDeleted"
	// ReasonRequestGone: an active execution's request no longer exists
	// (deleted while a replica was still creating the execution); the
	// orchestrator cancelled it so that the target is not blocked until
	// the timeout.
	ReasonRequestGone = "RequestGone"
	// ReasonExecutionMissing: the execution an Executing request names was
	// deleted before it finished.
	ReasonExecutionMissing = "ExecutionMissing"
)

// conditionReason is the API server's pattern for a condition's reason.
var conditionReason = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// maxConditionMessage is the API server's limit on a condition's message.
const maxConditionMessage = 32768

// safeReason returns reason if the API server accepts it as a condition
// reason, else fallback: an executor's free-form reason must not make the
// status write fail forever.
func safeReason(reason, fallback string) string {
	if len(reason) <= 1024 && conditionReason.MatchString(reason) {
		return reason
	}
	return fallback
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// setCondition sets one condition on st, stamped with this replica's clock
// when its status changes.
func (r *requestReconciler) setCondition(st *v1alpha1.RemediationRequestStatus, generation int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(r.opts.now()),
		Reason:             reason,
		Message:            truncate(message, maxConditionMessage),
	})
}

// writeStatus applies mutate to a copy of base's status and, if anything
// changed, writes it with a merge patch that carries only the changed
// fields and base's resourceVersion. So a replica working from a stale copy
// gets a Conflict instead of overwriting a newer decision, and the
// gateway's status.deduplication, which mutate never touches, is never
// sent. On success base is updated to what the server returned.
func (r *requestReconciler) writeStatus(ctx context.Context, base *v1alpha1.RemediationRequest, mutate func(*v1alpha1.RemediationRequestStatus)) (changed bool, err error) {
	want := base.DeepCopy()
	mutate(&want.Status)
	if equality.Semantic.DeepEqual(base.Status, want.Status) {
		return false, nil
	}
	from, to := base.EffectivePhase(), want.EffectivePhase()
	if err := r.client.Status().Patch(ctx, want, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("write status of request %s: %w", base.Name, err)
	}
	if from != to {
		r.metrics.transitions.WithLabelValues(string(from), string(to)).Inc()
	}
	*base = *want
	return true, nil
}

// writeExecutionStatus ends an execution (timeout, cancellation) with a
// merge patch carrying base's resourceVersion: if the executor wrote a
// phase meanwhile, the write fails with a Conflict and the caller
// re-examines instead of overwriting a finished execution.
func writeExecutionStatus(ctx context.Context, c client.Client, base *v1alpha1.WorkflowExecution, phase v1alpha1.WorkflowPhase, reason, message string, now metav1.Time) error {
	want := base.DeepCopy()
	want.Status.Phase = phase
	want.Status.Reason = reason
	want.Status.Message = message
	want.Status.CompletedAt = &now
	if err := c.Status().Patch(ctx, want, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("set execution %s %s: %w", base.Name, phase, err)
	}
	*base = *want
	return nil
}
