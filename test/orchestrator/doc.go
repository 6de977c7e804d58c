// Package orchestrator holds the end-to-end process tests of the
// orchestrator: three `leasehold orchestrator` replicas and one
// `leasehold executor --simulate`, each a separate OS process built from
// ./cmd/leasehold, against one real kube-apiserver.
//
// What in-process tests cannot show is what the orchestrator claims across
// replicas: separate caches, separate lockers, separate processes deciding
// at once, and a replica that dies (SIGKILL) while it holds a target's
// lock. A watcher owned by the test sees every WorkflowExecution change in
// the order the API server committed them, so "at most one non-terminal
// execution per target" is checked at every moment, not only at the end.
//
// What the suite checks:
//
//   - 10 requests on one target (Node/worker-1): every request completes,
//     with exactly one execution each; at no moment are two executions of
//     the target non-terminal; executions start in the requests' receivedAt
//     order (sequence order equals receivedAt order).
//   - 50 requests over 5 targets: the same, per target.
//   - kill -9 of the replica holding a target's lock mid-run: the other two
//     finish every request, with the same invariants, once the dead
//     holder's 5 s Lease has expired.
//   - every process prints its startup line, becomes ready on /readyz and
//     exits 0 on SIGTERM; the commands refuse (exit 1, with the reason) to
//     run without an identity or, for the executor, without --simulate.
//
// In the five-target test the replicas' wall clocks are set apart by up to
// four seconds (a hidden test flag); in the kill test every replica waits
// 300 ms between its last lock check and the create of an execution (another
// hidden test flag), so that a lock is held long enough to be caught.
//
// Hand-off times (an execution's Completed status seen by the watcher to
// the next execution of its target seen created) are logged, not asserted:
// on a loaded CI machine they vary, and the invariants do not depend on them.
//
// The tests carry the integration build tag and need the control-plane
// binaries:
//
//	LEASEHOLD_ASSETS_DIR=$(hack/controlplane.sh) go test -race -count=1 -tags integration -v ./test/orchestrator/
//
// The binary is built once per run with the same -race setting as the test
// binary, so the children run under the race detector too. Each test gets a
// namespace of its own, so tests (and -count iterations) never see each
// other's objects or Leases.
package orchestrator
