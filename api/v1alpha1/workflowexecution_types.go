package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkflowPhase is where a WorkflowExecution is in its life.
//
//	Pending -> Running -> Completed | Failed | Cancelled
//
// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed;Cancelled
type WorkflowPhase string

const (
	WorkflowPending   WorkflowPhase = "Pending"
	WorkflowRunning   WorkflowPhase = "Running"
	WorkflowCompleted WorkflowPhase = "Completed"
	WorkflowFailed    WorkflowPhase = "Failed"
	WorkflowCancelled WorkflowPhase = "Cancelled"
)

// IsTerminal reports whether the execution has finished. A non-terminal
// execution keeps its target busy.
func (p WorkflowPhase) IsTerminal() bool {
	return p == WorkflowCompleted || p == WorkflowFailed || p == WorkflowCancelled
}

// WorkflowExecutionSpec is immutable: an execution is never re-pointed at
// another target or request.
type WorkflowExecutionSpec struct {
	// Target is the object the workflow acts on.
	Target TargetRef `json:"target"`

	// RemediationRequestRef names the request this execution serves; its UID
	// makes a retried create for the same request recognisable.
	RemediationRequestRef ObjectReference `json:"remediationRequestRef"`

	// Sequence numbers the executions of one target: 1 for the first, and
	// the latest plus one after that. The name is derived from target and
	// sequence, so two creators racing for the same slot collide on the name.
	// +kubebuilder:validation:Minimum=1
	Sequence int64 `json:"sequence"`

	// FencingToken is the lock token held when the execution was created,
	// recorded for audit.
	// +optional
	FencingToken string `json:"fencingToken,omitempty"`

	// Timeout bounds how long the execution may stay non-terminal before the
	// orchestrator fails it.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// WorkflowExecutionStatus is written by the executor, and by the orchestrator
// when it times an execution out or cancels it. A terminal phase is final;
// the rule that enforces it sits on WorkflowExecution.
type WorkflowExecutionStatus struct {
	// Phase; empty means Pending.
	// +optional
	Phase WorkflowPhase `json:"phase,omitempty"`

	// Reason is a CamelCase word for the last transition.
	// +optional
	Reason string `json:"reason,omitempty"`

	// Message is a human explanation of the last transition.
	// +optional
	Message string `json:"message,omitempty"`

	// StartedAt is when the executor began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// CompletedAt is when the execution reached a terminal phase.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
}

// WorkflowExecution is one remediation run against one target.
//
// A terminal phase is final: the orchestrator starts the target's next
// execution only after seeing this one terminal. The rule sits on the
// object, not on status, so that a write that drops status altogether is
// judged too: a rule on status has no old value to compare then.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Completed', 'Failed', 'Cancelled']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)",message="a terminal phase is final",fieldPath=".status.phase"
// +kubebuilder:resource:shortName=wfe,categories=leasehold
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.target.kind`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target.name`
// +kubebuilder:printcolumn:name="Request",type=string,JSONPath=`.spec.remediationRequestRef.name`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WorkflowExecution struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
	Spec   WorkflowExecutionSpec   `json:"spec"`
	Status WorkflowExecutionStatus `json:"status,omitempty"`
}

// WorkflowExecutionList is a list of WorkflowExecutions.
//
// +kubebuilder:object:root=true
type WorkflowExecutionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowExecution `json:"items"`
}

// EffectivePhase is the phase every reader must use: empty means Pending.
func (w *WorkflowExecution) EffectivePhase() WorkflowPhase {
	if w.Status.Phase == "" {
		return WorkflowPending
	}
	return w.Status.Phase
}

// IsTerminal reports whether the execution's effective phase is terminal.
func (w *WorkflowExecution) IsTerminal() bool {
	return w.EffectivePhase().IsTerminal()
}
