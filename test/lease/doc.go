// Package lease holds the multi-process tests of package
// github.com/leasehold/leasehold/lease: several real OS processes, each with
// its own Locker, contending for one key against one real kube-apiserver.
//
// In-process tests cannot show what the library claims across replicas:
// separate monotonic clocks, separate observation tables, a process that
// dies without releasing (SIGKILL) and one that is frozen past its lease and
// then resumes (SIGSTOP, SIGCONT). Here every contender is a child process
// (./lockholder) driven over stdin and reporting events over stdout, so the
// test decides when each one acquires, writes and releases, and waits for
// reported events rather than sleeping.
//
// What the suite checks:
//
//   - kill -9 of the holder: exactly one waiting contender takes the Lease
//     over, with a single takeover Update after observing no change for one
//     lease duration; the other keeps waiting until the winner releases;
//     tokens increase across all three holders.
//   - a holder stopped past its lease: after SIGCONT its Lock.Err is
//     ErrLost and its Lock.Context already done, its stale write is rejected by a token-checking recorder
//     owned by the test, and the new holder is unaffected.
//   - release to next acquisition across processes: every hand-over after a
//     clean release is a Create woken by the watch, never a takeover, with
//     strictly increasing tokens; the latencies are logged.
//
// Assertions are on counts, orders, error classes and accept/reject
// outcomes. Wall times are logged, not asserted: on a loaded CI machine they
// vary, and the library's safety does not depend on them.
//
// The tests carry the integration build tag and need the control-plane
// binaries:
//
//	LEASEHOLD_ASSETS_DIR=$(hack/controlplane.sh) go test -race -count=1 -tags integration -v ./test/lease/
//
// The child is built once per run with the same -race setting as the test
// binary.
package lease
