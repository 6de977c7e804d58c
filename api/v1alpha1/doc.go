// Package v1alpha1 holds the leasehold.dev/v1alpha1 API: the contract between
// the gateway, which turns alert signals into RemediationRequests, and the
// orchestrator, which turns RemediationRequests into WorkflowExecutions.
//
// Both kinds are namespaced and live in the services' own namespace; the
// resource a request is about is named by a TargetRef, which may point into
// any namespace or at a cluster-scoped object such as a Node.
//
// # Status ownership
//
// A RemediationRequest's status has two writers that never touch each other's
// fields: the gateway owns status.deduplication, the orchestrator owns phase,
// blockReason, blockedBy, workflowExecutionRef and conditions. Both write
// through the status subresource with optimistic concurrency
// (resourceVersion), so a writer that raced another gets a Conflict and
// re-reads instead of overwriting.
//
// The status subresource drops status on create, so a freshly created request
// has an empty phase and, through the schema's defaults that the API server
// applies to every object it serves, a deduplication record holding only
// occurrenceCount 1: kubectl shows the count without the gateway spending a
// second write on it. Readers must not interpret the missing values
// themselves: EffectivePhase and EffectiveDeduplication give every reader
// the same answer (Pending, and one occurrence of spec.signalName seen at
// spec.receivedAt), also for an object decoded without the defaults, and
// IsTerminal is the only definition of a terminal phase.
//
// +kubebuilder:object:generate=true
// +groupName=leasehold.dev
package v1alpha1
