// Package executor provides a simulated execution engine for
// WorkflowExecutions, for local runs and tests. It runs no workflow: the real
// execution engine is out of scope for this project. It only moves each
// execution through the phases a real engine would report, so that the
// orchestrator's hand-off from one execution to the next on a target can be
// exercised end to end.
//
// # What the Simulator does
//
// For every WorkflowExecution in its namespace:
//
//	Pending (or empty phase) -> Running    startedAt = now
//	Running -> Completed | Failed          after Options.Duration, completedAt = now;
//	                                       Failed (reason SimulatedFailure) with
//	                                       probability Options.FailureRate
//
// A terminal execution (Completed, Failed, Cancelled) is never written: the
// orchestrator may time an execution out or cancel it while the simulator
// holds an older copy. Every write goes through the status subresource and
// carries the resourceVersion of the copy the decision was made on, so a
// write based on a stale copy fails with a Conflict and the simulator reads
// again instead of overwriting a newer status. An execution being deleted is
// left alone.
//
// A reconcile never waits: a Running execution whose time has not come is
// requeued for exactly the remaining time.
//
// # Replicas
//
// Run one simulator per namespace; that is all a local run or a test needs.
// Two would not corrupt anything, because every transition is conditional on
// the resourceVersion it was decided on: for each transition exactly one
// writer wins and the other gets a Conflict. What a second replica changes is
// timing only: the start time each replica measures Duration from is the one
// it wrote itself (kept in memory, full precision) or, for an execution
// another replica or an earlier process started, status.startedAt, which the
// API stores with one-second precision; such an execution may finish up to
// one second early.
//
// # Two ways to run it
//
// SetupWithManager registers the Simulator as a controller of a
// controller-runtime manager (what `leasehold executor --simulate` does). Run
// drives the same transitions without a manager, from a watch made through a
// client that implements client.WithWatch (the controller-runtime fake
// client, or client.NewWithWatch on a real API server), for tests and small
// tools.
package executor
