package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// LabelFingerprint carries FingerprintLabelValue(spec.fingerprint).
	LabelFingerprint = "leasehold.dev/fingerprint"
	// LabelTarget carries TargetLabelValue(spec.target).
	LabelTarget = "leasehold.dev/target"

	// LabelGeneration numbers the requests of one fingerprint (for an RR)
	// or the executions of one target (for a WFE): "1", "2", ... The object
	// name ends in the same number; the label makes it listable.
	LabelGeneration = "leasehold.dev/generation"

	// AnnotationFencingToken records the lease token held when the gateway
	// created the request, for audit. Absent when the create needed no lock.
	AnnotationFencingToken = "leasehold.dev/fencing-token"

	// AnnotationWriteID carries the write id of the create that made the
	// request. A gateway whose create failed in a way that leaves open
	// whether the API server applied it (a reset connection, a lost
	// response) reads the request back and finds its own id here if it
	// did. The status subresource drops status on create, so the id of a
	// create cannot live in status.deduplication.recentWrites.
	AnnotationWriteID = "leasehold.dev/write-id"

	// FinalizerCancelExecution lets the orchestrator cancel a request's
	// WorkflowExecution and unblock the next request before the request
	// goes away; nothing relies on a garbage collector.
	FinalizerCancelExecution = "leasehold.dev/cancel-execution"

	// MaxSignalNames bounds status.deduplication.signalNames so that an
	// incident fed by many distinct alerts cannot grow the object without limit.
	MaxSignalNames = 16

	// MaxRecentWrites bounds status.deduplication.recentWrites.
	MaxRecentWrites = 16
)

// SignalSource says which adapter received a signal.
// +kubebuilder:validation:Enum=alertmanager;kubernetes-event
type SignalSource string

const (
	SourceAlertmanager    SignalSource = "alertmanager"
	SourceKubernetesEvent SignalSource = "kubernetes-event"
)

// RemediationPhase is where a RemediationRequest is in its life.
//
//	Pending -> Blocked <-> Pending -> Executing -> Completed | Failed | Cancelled
//
// +kubebuilder:validation:Enum=Pending;Blocked;Executing;Completed;Failed;Cancelled
type RemediationPhase string

const (
	PhasePending   RemediationPhase = "Pending"
	PhaseBlocked   RemediationPhase = "Blocked"
	PhaseExecuting RemediationPhase = "Executing"
	PhaseCompleted RemediationPhase = "Completed"
	PhaseFailed    RemediationPhase = "Failed"
	PhaseCancelled RemediationPhase = "Cancelled"
)

// IsTerminal reports whether no further transition can happen. It is the
// only definition of terminal: a non-terminal request absorbs new signals for
// its fingerprint, a terminal one does not.
func (p RemediationPhase) IsTerminal() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseCancelled
}

// BlockReasonResourceBusy means another WorkflowExecution is active on the
// same target; the request runs after it finishes.
const BlockReasonResourceBusy = "ResourceBusy"

// RemediationRequestSpec describes one incident. It is immutable: new signals
// for the same incident change only status.deduplication.
type RemediationRequestSpec struct {
	// Fingerprint identifies the incident's workload: a lowercase hex SHA-256.
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	Fingerprint string `json:"fingerprint"`

	// SignalName is the name of the first signal, such as an alert name or
	// an event reason.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SignalName string `json:"signalName"`

	// Severity as the source reported it, such as "critical" or "warning".
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Severity string `json:"severity,omitempty"`

	// Source is the adapter that received the first signal.
	Source SignalSource `json:"source"`

	// Target is the workload the signal resolved to (a Pod's owning
	// Deployment, say): the unit of remediation and of exclusion.
	Target TargetRef `json:"target"`

	// SignalTarget is the object the signal named; it may equal Target.
	SignalTarget TargetRef `json:"signalTarget"`

	// FiringTime is when the source says the condition started.
	// +optional
	FiringTime *metav1.Time `json:"firingTime,omitempty"`

	// ReceivedAt is when the gateway received the first signal. Requests for
	// one target run in receivedAt order, hence microsecond precision.
	ReceivedAt metav1.MicroTime `json:"receivedAt"`

	// SignalLabels are the labels of the first signal.
	// +optional
	SignalLabels map[string]string `json:"signalLabels,omitempty"`

	// SignalAnnotations are the annotations of the first signal.
	// +optional
	SignalAnnotations map[string]string `json:"signalAnnotations,omitempty"`
}

// DeduplicationStatus counts the signals one request absorbed. The gateway
// owns it.
//
// The status subresource drops status on create, so the create that opens
// a request cannot write this record, and a second write per request only
// to show a count of 1 would cost as much as the create. The schema's
// defaults fill in occurrenceCount 1 instead, which the API server applies
// whenever it reads or writes the object, so every client (kubectl get's
// Count column, -o yaml, a watch) sees it. The gateway's first count update
// writes the full record. The other fields may be absent until then and
// take their meaning from the spec; EffectiveDeduplication fills them in.
type DeduplicationStatus struct {
	// FirstSeenAt is when the first signal was received; absent means
	// spec.receivedAt.
	// +optional
	FirstSeenAt metav1.MicroTime `json:"firstSeenAt,omitempty"`
	// LastSeenAt is when the latest signal was received; absent means
	// spec.receivedAt.
	// +optional
	LastSeenAt metav1.MicroTime `json:"lastSeenAt,omitempty"`

	// OccurrenceCount is the number of signals absorbed, the first included.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	OccurrenceCount int64 `json:"occurrenceCount"`

	// SignalNames are the distinct signal names seen, oldest first, at most
	// MaxSignalNames. Absent means spec.signalName alone.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	SignalNames []string `json:"signalNames,omitempty"`

	// RecentWrites are the write ids of the last count updates, newest
	// last, at most MaxRecentWrites: each update appends its own id and
	// drops the oldest beyond the bound. They exist so that a gateway whose
	// update failed without an answer (a reset connection, a lost response)
	// can read the request back and learn whether the API server applied
	// it; retrying blindly would count the same signals twice. A write id
	// is "<gateway identity>/<random>-<sequence>", or "<random>-<sequence>"
	// without an identity.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=300
	// +listType=atomic
	RecentWrites []string `json:"recentWrites,omitempty"`
}

// ObjectReference names an object of this API in the same namespace, with
// the UID that tells a re-created object of the same name apart.
type ObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	UID string `json:"uid,omitempty"`
}

// RemediationRequestStatus is written by two owners; see the package doc.
// A terminal phase is final; the rule that enforces it sits on
// RemediationRequest.
type RemediationRequestStatus struct {
	// Phase is owned by the orchestrator. Empty means Pending.
	// +optional
	Phase RemediationPhase `json:"phase,omitempty"`

	// BlockReason says why a Blocked request waits, such as ResourceBusy.
	// +optional
	BlockReason string `json:"blockReason,omitempty"`

	// BlockedBy names the WorkflowExecution a Blocked request waits for.
	// +optional
	BlockedBy string `json:"blockedBy,omitempty"`

	// WorkflowExecutionRef names the execution started for this request.
	// +optional
	WorkflowExecutionRef *ObjectReference `json:"workflowExecutionRef,omitempty"`

	// Conditions explain the phase to humans and tools.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Deduplication is owned by the gateway. The API server defaults it to
	// an occurrence count of 1, one signal seen at spec.receivedAt.
	// +optional
	// +kubebuilder:default={occurrenceCount: 1}
	Deduplication *DeduplicationStatus `json:"deduplication,omitempty"`
}

// RemediationRequest is one incident on one target, however many signals
// reported it.
//
// A terminal phase is final: the gateway starts a new request generation
// only after seeing the previous one terminal, and that is only safe if it
// stays terminal. The rule sits on the object, not on status, so that a
// write that drops status altogether (a merge patch {"status":null}, a
// status update without the field) is judged too: a rule on status has no
// old value to compare then, and would let the request turn Pending again.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Completed', 'Failed', 'Cancelled']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)",message="a terminal phase is final",fieldPath=".status.phase"
// +kubebuilder:resource:shortName=rr,categories=leasehold
// +kubebuilder:selectablefield:JSONPath=`.spec.fingerprint`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.target.kind`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target.name`
// +kubebuilder:printcolumn:name="Count",type=integer,JSONPath=`.status.deduplication.occurrenceCount`
// +kubebuilder:printcolumn:name="Signal",type=string,JSONPath=`.spec.signalName`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RemediationRequest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
	Spec RemediationRequestSpec `json:"spec"`
	// +kubebuilder:default={}
	Status RemediationRequestStatus `json:"status,omitempty"`
}

// RemediationRequestList is a list of RemediationRequests.
//
// +kubebuilder:object:root=true
type RemediationRequestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemediationRequest `json:"items"`
}

// EffectivePhase is the phase every reader must use: an empty phase (the
// status subresource drops status on create) means Pending.
func (rr *RemediationRequest) EffectivePhase() RemediationPhase {
	if rr.Status.Phase == "" {
		return PhasePending
	}
	return rr.Status.Phase
}

// IsTerminal reports whether the request's effective phase is terminal.
func (rr *RemediationRequest) IsTerminal() bool {
	return rr.EffectivePhase().IsTerminal()
}

// EffectiveDeduplication is the deduplication record every reader must use.
// A request the gateway has not yet counted again counts the one signal that
// created it, so no reader ever sees an occurrence count below 1. That holds
// whether the record is absent (an object decoded without the API server's
// defaults) or holds only the defaulted count: times left out are
// spec.receivedAt and the signal names spec.signalName, as the API server
// shows the count. The result is a copy: changing it does not change rr.
func (rr *RemediationRequest) EffectiveDeduplication() DeduplicationStatus {
	var out DeduplicationStatus
	if d := rr.Status.Deduplication; d != nil {
		out = *d.DeepCopy()
	}
	if out.OccurrenceCount < 1 {
		out.OccurrenceCount = 1
	}
	if out.FirstSeenAt.IsZero() {
		out.FirstSeenAt = rr.Spec.ReceivedAt
	}
	if out.LastSeenAt.IsZero() {
		out.LastSeenAt = rr.Spec.ReceivedAt
	}
	if len(out.SignalNames) == 0 {
		out.SignalNames = []string{rr.Spec.SignalName}
	}
	return out
}
