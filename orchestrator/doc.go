// Package orchestrator turns RemediationRequests into WorkflowExecutions
// with at most one active (non-terminal) execution per target resource,
// across any number of replicas, including replicas that pause.
//
// Every replica reconciles every request; there is no leader election for
// the work. Exclusion comes from two mechanisms with different jobs:
//
//   - A per-target lock (package lease, key TargetRef.LockKey, Lease prefix
//     "ro-lock") serialises the replicas' decisions: "is the target free,
//     which request is next, what is the next generation".
//   - The execution's name is the fence that makes a stale decision
//     harmless: it is derived from the target and a generation number
//     (ExecutionName), so two replicas that decide to start the same
//     generation collide on the name and only one create succeeds.
//
// # Protocol
//
// A Pending or Blocked request is first looked at through the manager's
// cache, for what needs no lock because it creates nothing: if an
// execution of this request exists, it is recorded (Executing, or the
// matching terminal phase); if another request's execution is active, the
// request is Blocked, reason ResourceBusy, blockedBy naming it. Both are
// safe on stale data: every status write carries the resourceVersion it
// was computed from, and an execution the cache still shows active has its
// end delivered as an event once the cache has it, which wakes the request
// again.
//
// Only when the target looks free does the reconcile take the target's
// lock, with TryAcquire (contention: requeue after a jittered RequeueDelay,
// never a wait inside Reconcile), and read from the API server, not from
// the cache, the target's executions and then its requests. Then:
//
//   - the request already has an execution (same request UID): record it —
//     reconciles are idempotent;
//   - another execution is active: Blocked/ResourceBusy naming it (an
//     active execution whose request no longer exists is cancelled first,
//     reason RequestGone);
//   - otherwise the next execution, generation = the highest sequence of
//     the target's executions + 1, is created for the earliest startable
//     request of the target (by spec.receivedAt, then name), whichever
//     request's reconcile got the lock, after that request got the
//     finalizer v1alpha1.FinalizerCancelExecution. The request being
//     reconciled becomes Executing if it is that earliest one, Blocked on
//     the new execution if not. The lock is released after the status
//     write.
//
// If the create fails with AlreadyExists, another replica created that
// generation since the read (this one was typically paused past its lease):
// the reconcile re-reads the execution of that name and, if it belongs to
// another request, blocks on it; if it belongs to the request being
// reconciled (started for it by another replica meanwhile), records it.
// It never creates a second execution.
//
// Blocked requests are woken by the end (terminal phase or deletion) of any
// execution of their target, and by a slow periodic resync
// (BlockedResync). An execution reaching Completed, Failed or Cancelled
// moves its request to Completed, Failed or Cancelled with the execution's
// reason in the Finished condition; a terminal request loses its finalizer.
// Deleting a request cancels its active execution (reason RequestDeleted)
// under the target's lock, then removes the finalizer; nothing relies on a
// garbage collector.
//
// A separate controller, keyed by execution, looks at every active
// execution. It fails one still non-terminal spec.timeout after the
// replica first saw it, on the replica's own clock, so that a clock running
// ahead of the API server's fails nothing early (reason TimedOut), and cancels one whose request, read from the API
// server, no longer exists (reason RequestGone). The latter closes the
// one gap of the finalizer: a replica paused between its lock check and
// its create can land an execution after the request was deleted and its
// finalize, finding no execution, let it go; the execution's creation
// event brings it to this controller even when its target has no other
// request to notice it.
//
// # Retention
//
// A retention pass, every RetentionInterval, deletes terminal requests and
// executions whose end (or, lacking one, creation) is older than Retention,
// with UID and resourceVersion preconditions. It never deletes the latest
// execution of a target (highest sequence) nor the latest request of a
// fingerprint (highest leasehold.dev/generation label among the requests
// with that spec.fingerprint), each computed from one paged list. Each is
// what the next name derives from: the next execution of a target is named
// after the highest sequence, and the gateway names a fingerprint's next
// request after the highest generation it lists. Were the latest deleted,
// the maximum would go backwards, and two writers reading before and after
// the delete would pick different names, so both creates would succeed: two
// active executions on one target, or two open requests (and later two
// remediations) for one incident. A request without a generation label (made
// by hand) counts as generation 0 for the gateway, decides no name, and is
// deleted normally.
//
// # Guarantees
//
// At most one execution of a target is non-terminal at any moment, as long
// as the assumptions below hold. The argument: executions are only created
// by the protocol above; a create succeeds only for a name not used
// before; the name's generation was computed, after the previous execution
// of the target was seen terminal, as its sequence + 1. Two creators that
// both saw the target free computed the same generation (the latest
// execution is never deleted, so the maximum cannot go backwards), hence
// the same name, and one of them gets AlreadyExists. A creator that read
// before the previous execution existed computes that execution's
// generation, whose name is taken.
//
// Requests of one target start in arrival order (receivedAt, then name)
// among the requests that existed when each start was decided. Every
// status write is a merge patch of the orchestrator's fields carrying the
// resourceVersion it was computed from: a stale replica gets a Conflict,
// and the gateway's status.deduplication is never sent. The finalizer is
// added by a JSON patch conditional on the request's UID and finalizers
// rather than its resourceVersion, so that the gateway's count updates
// during a storm do not make it conflict; the API server refuses a new
// finalizer on a request whose deletion has started.
//
// # Assumptions
//
//   - Nothing else deletes the latest execution of a target (retention
//     keeps it; no ownerReference ties executions to requests) and nothing
//     else creates executions with the target label. If the latest
//     execution is deleted, a generation can be reused, and a replica
//     paused across that deletion could start a second execution.
//   - No replica stays paused between its lock check and its create for
//     longer than Retention. Retention deletes terminal executions that
//     are not the latest; a replica that read the target before execution
//     N existed targets N's name, and if it resumes only after N finished
//     and aged past Retention, that name is free again. With the default
//     of 24h this means a pause of more than a day.
//   - Executions' spec is immutable (the CRD enforces it), so sequence and
//     request reference cannot change under the protocol.
//   - Terminal phases are final (the CRD enforces it): an execution or a
//     request read as Completed, Failed or Cancelled stays so. The target
//     is judged free, and the next generation started, on an execution
//     read as terminal; one moved back to Running afterwards would be a
//     second active execution.
//   - Nothing else deletes the latest request of a fingerprint or rewrites
//     a request's generation label, for the reason given under Retention.
//     A gateway replica paused between its read of a fingerprint's
//     requests and its create for longer than Retention is the same hole
//     as the paused orchestrator replica above, on the gateway's side.
//   - The cache decides only what to look at and when to wait, never to
//     create: every create follows uncached reads under the lock.
//
// # What is not guaranteed
//
//   - A timeout is a judgement, not a proof that the executor stopped: once
//     an execution is failed by timeout, the next one may start while a
//     hung executor still acts on the target. Timeouts compare the API
//     server's creation time with the replica's clock; skew shifts them.
//   - Arrival order across requests created while a start is being decided
//     is not strict: a request with an earlier receivedAt created after the
//     decision waits for the next turn.
//   - A request's blockedBy may name a finished execution for the short
//     time between that execution's end and the request's next reconcile.
//     It only moves forward (to higher sequences), so replicas whose caches
//     lag by different amounts do not overwrite each other.
//
// # Observability
//
// Conditions on the request: Blocked (ResourceBusy / Started), Executing
// (Started / the execution's reason), Finished (the execution's reason).
// Events (events.k8s.io/v1, reporting controller EventReporter, the
// replica's identity in the note): Blocked (once per wait), Started,
// Completed, Failed, Cancelled, TimedOut.
//
// Metrics on Options.Registerer, labels bounded:
//
//	orchestrator_request_phase_transitions_total{from,to}
//	orchestrator_blocks_total{reason}
//	orchestrator_pending_to_executing_seconds
//	orchestrator_reconcile_total{controller,outcome}   outcome "fenced": a create refused by the name
//	orchestrator_retention_deleted_total{kind}
//	orchestrator_retention_failures_total
//
// The lock metrics (orchestrator_lock_*) come from the Locker. At log
// verbosity 2 every reconcile logs its outcome and duration.
//
// # RBAC
//
// In its namespace the orchestrator needs: remediationrequests get, list,
// watch, patch (finalizer) and delete (retention); remediationrequests/status
// patch; workflowexecutions get, list, watch, create, delete (retention);
// workflowexecutions/status patch; events.k8s.io events create and patch;
// and the Locker's Lease permissions (see package lease).
package orchestrator
