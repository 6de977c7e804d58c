// Package baseline is the original design's gateway deduplication, rebuilt
// from its published algorithm so that the benchmark can run it side by side
// with leasehold's. It exists only for that comparison: it lives with the
// benchmark, is never wired into the product, and keeps the original's
// flaws on purpose, because the benchmark measures them.
//
// # The algorithm, per signal
//
// Up to MaxAttempts (10) attempts, spaced 100 ms doubling to a 1 s cap with
// ±10 % jitter:
//
//  1. From the second attempt on, after the wait: list the RemediationRequests
//     with the fingerprint's label; if one is not terminal, the other replica
//     created it: count the signal into it and answer Duplicate.
//  2. Take the fingerprint's lock, the Lease "gw-lock-<hash>": Get it; if it
//     does not exist, Create it (AlreadyExists: held); if this pod is its
//     holder, it is ours; if its renewTime plus its duration lies before the
//     local clock, take it over with an Update (Conflict: held); otherwise it
//     is held. Held on the last attempt: ErrBusy, naming the fingerprint.
//  3. Holding it: list the requests with the fingerprint's label; count into
//     a non-terminal one (Duplicate) or create a new one with a random name
//     suffix (Created). Then release: Get the Lease and, if this pod is its
//     holder, Delete it without preconditions.
//
// Counting is a Get and a status Update, retried on Conflict CountAttempts
// (3) times from a fresh Get; when that runs out, or the update fails for
// another reason, the signal is still answered Duplicate and is not counted.
// An API error anywhere else fails the signal at once with ErrUnavailable.
//
// # The flaws kept on purpose
//
//   - The holder is the pod, not the request: every request of one replica
//     "holds" a lock that replica holds, so requests of one replica overlap
//     inside the critical section, create duplicate requests, and the first
//     to finish releases the lock under the others.
//   - Release reads the Lease and deletes it without preconditions: a Lease
//     another replica took over between the read and the delete is deleted.
//   - Expiry compares the remote renewTime with the local clock, so clock
//     skew between replicas breaks it; a Lease without renewTime or duration
//     never expires. Takeover does not update acquireTime or
//     leaseTransitions. There is no renewal and no loss signal.
//   - Release runs on the request's context: a request that timed out cannot
//     release, and the fingerprint stays locked until the Lease expires.
//   - Count updates give up under conflict and the signal is answered
//     Duplicate all the same, so counts fall below the signals acknowledged.
//   - No coalescing: every signal makes its own calls.
//
// One deliberate difference from the original: it wrote an initial
// status.deduplication right after each create (a Get and an Update). Our
// RemediationRequest reads an absent status as "one occurrence", so that
// write is left out; it would only add calls to the baseline.
package baseline
