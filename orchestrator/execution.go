package orchestrator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
)

// ExecutionName is the name of the execution with the given sequence on
// target t: "wfe-<TargetLabelValue(t)>-<sequence>".
// It is the fence: every replica that decides to start the next execution
// of a target computes the same name, so only one create can succeed. It
// carries the label's whole 160-bit hash: with a shorter prefix, two targets
// that share it would fight over one name and the later one would never
// get an execution.
func ExecutionName(t v1alpha1.TargetRef, sequence int64) string {
	return fmt.Sprintf("wfe-%s-%d", v1alpha1.TargetLabelValue(t), sequence)
}

// sequenceOf is the sequence an execution name ends in, 0 if it has none.
func sequenceOf(name string) int64 {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// newExecution builds the execution with the given sequence for rr, which
// must be the earliest startable request of its target.
func newExecution(rr *v1alpha1.RemediationRequest, sequence int64, token lease.Token, opts Options) *v1alpha1.WorkflowExecution {
	return &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ExecutionName(rr.Spec.Target, sequence),
			Namespace: rr.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelTarget:     v1alpha1.TargetLabelValue(rr.Spec.Target),
				v1alpha1.LabelGeneration: strconv.FormatInt(sequence, 10),
			},
			// No ownerReference: the latest execution of a target must
			// outlive its request (it carries the generation the next
			// name derives from), and nothing here relies on a garbage
			// collector.
		},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                rr.Spec.Target,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: rr.Name, UID: string(rr.UID)},
			Sequence:              sequence,
			FencingToken:          token.String(),
			Timeout:               &metav1.Duration{Duration: opts.DefaultTimeout},
		},
	}
}

// targetView is what one uncached read of a target shows: its executions,
// listed first, and its requests, listed after. The order matters: a
// request that created an execution existed before it, so an active
// execution whose request is missing from the later list belongs to a
// request that is gone.
type targetView struct {
	executions []v1alpha1.WorkflowExecution
	requests   []v1alpha1.RemediationRequest
}

// request returns the listed request with the given UID, or nil.
func (v *targetView) request(uid types.UID) *v1alpha1.RemediationRequest {
	for i := range v.requests {
		if v.requests[i].UID == uid {
			return &v.requests[i]
		}
	}
	return nil
}

// executionOf returns the execution created for the request with the given
// UID (the latest, should there be several), or nil.
func (v *targetView) executionOf(uid types.UID) *v1alpha1.WorkflowExecution {
	var found *v1alpha1.WorkflowExecution
	for i := range v.executions {
		w := &v.executions[i]
		if w.Spec.RemediationRequestRef.UID == string(uid) && (found == nil || w.Spec.Sequence > found.Spec.Sequence) {
			found = w
		}
	}
	return found
}

// latestSequence is the highest sequence of the target's executions, 0 if
// it has none. The latest execution is never deleted, so the next sequence
// never reuses a name.
func (v *targetView) latestSequence() int64 {
	var latest int64
	for _, w := range v.executions {
		latest = max(latest, w.Spec.Sequence)
	}
	return latest
}

// active returns the non-terminal executions, oldest sequence first. The
// orchestrator's invariant is that there is at most one.
func (v *targetView) active() []*v1alpha1.WorkflowExecution {
	var out []*v1alpha1.WorkflowExecution
	for i := range v.executions {
		if !v.executions[i].IsTerminal() {
			out = append(out, &v.executions[i])
		}
	}
	slices.SortFunc(out, func(a, b *v1alpha1.WorkflowExecution) int {
		return int(a.Spec.Sequence - b.Spec.Sequence)
	})
	return out
}

// head returns the request that runs next on the target: the earliest, by
// receivedAt then name, of the requests that are not terminal, not being
// deleted and have no execution yet. Nil if there is none.
func (v *targetView) head() *v1alpha1.RemediationRequest {
	var head *v1alpha1.RemediationRequest
	for i := range v.requests {
		rr := &v.requests[i]
		if rr.IsTerminal() || !rr.DeletionTimestamp.IsZero() || v.executionOf(rr.UID) != nil {
			continue
		}
		if head == nil || arrivesBefore(rr, head) {
			head = rr
		}
	}
	return head
}

// arrivesBefore orders the requests of one target: receivedAt, then name.
func arrivesBefore(a, b *v1alpha1.RemediationRequest) bool {
	if !a.Spec.ReceivedAt.Equal(&b.Spec.ReceivedAt) {
		return a.Spec.ReceivedAt.Before(&b.Spec.ReceivedAt)
	}
	return a.Name < b.Name
}
