package overlap

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// Classifier puts an object in its exclusion group and says whether it is
// active; ok is false for an object of another type, which the Watch then
// ignores.
type Classifier func(client.Object) (group string, active, ok bool)

// Executions: at most one non-terminal WorkflowExecution per target (its
// lock key).
func Executions(obj client.Object) (string, bool, bool) {
	wfe, ok := obj.(*v1alpha1.WorkflowExecution)
	if !ok {
		return "", false, false
	}
	return wfe.Spec.Target.LockKey(), !wfe.IsTerminal(), true
}

// Requests: at most one non-terminal RemediationRequest per fingerprint.
// Several requests of one fingerprint one after the other are correct: the
// gateway starts the next one only after the previous one has finished,
// and short executions can finish during a storm.
func Requests(obj client.Object) (string, bool, bool) {
	rr, ok := obj.(*v1alpha1.RemediationRequest)
	if !ok {
		return "", false, false
	}
	return rr.Spec.Fingerprint, !rr.IsTerminal(), true
}
