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
// another request, blocks on it. It never creates a second execution.
//
// Blocked requests are woken by the end (terminal phase or deletion) of any
// execution of their target, and by a slow periodic resync
// (BlockedResync). An execution reaching Completed, Failed or Cancelled
// moves its request to Completed, Failed or Cancelled with the execution's
// reason in the Finished condition; a terminal request loses its finalizer.
// A separate controller fails executions still non-terminal at creation +
// spec.timeout (reason TimedOut). Deleting a request cancels its active
// execution (reason RequestDeleted) under the target's lock, then removes
// the finalizer; nothing relies on a garbage collector.
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
// and the gateway's status.deduplication is never sent.
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
