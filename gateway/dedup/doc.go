// Package dedup turns incidents into RemediationRequests: exactly one
// request per incident that is still in progress, with an occurrence count
// that includes every signal recorded for it, however many gateway
// replicas and however many concurrent copies of a signal there are.
//
// # What makes it exact
//
// Correctness rests on two atomic API server operations, not on the lock:
//
//   - Creates are fenced by the name. The requests of one fingerprint are
//     named "<prefix>-<fingerprint prefix>-<generation>", and generation
//     n+1 is only created after generation n was read terminal. Terminal
//     phases are final, so at most one request per fingerprint is ever
//     in progress, and two writers that read the same state try to create
//     the same name: one gets AlreadyExists. That holds for a writer whose
//     lock expired while it was paused, and for one that took no lock.
//   - Count updates carry the resourceVersion they read. An update based on
//     a stale read (another count, a phase change by the orchestrator, the
//     request turning terminal) fails with Conflict and is retried from a
//     fresh read.
//
// Reads go to the API server, never to an informer cache: a cache that lags
// would only cost conflicts, but reading the source keeps the number of
// attempts low.
//
// # What the lock adds
//
// A lease lock per fingerprint (lease prefix "gw-lock") serialises the count
// updates of replicas, so that they wait for each other instead of spending
// attempts on conflicts. It costs two writes (create and delete of the
// Lease). By default (LockUpdates) creates skip it: a losing create costs one
// AlreadyExists and its next attempt counts into the winner's request. LockAll
// takes it for every write, as the original design did.
//
// # Coalescing
//
// Concurrent incidents of one fingerprint inside one process join a batch
// that one worker goroutine counts: each attempt reads the latest request,
// takes every incident pending at that moment and counts them with one write
// (the first incident of a new request is counted by the create and the
// rest by one status update). Incidents that arrive during a write join the
// next one. Each caller gets its own answer: the one whose incident created
// the request gets Created, the others Duplicate with the count after their
// write.
//
// # Retries
//
// One retry loop per batch, bounded by Options.MaxAttempts (default 10) and
// spaced by Options.Policy (default 100ms doubling to 1s, ±10% jitter). A held
// lock or a write conflict costs one attempt and one wait; AlreadyExists costs
// one attempt and no wait, since the request to count into now exists. Any
// other API error ends the loop at once with ErrUnavailable. Running out of
// attempts ends it with ErrBusy naming the fingerprint. Both fail every
// incident of the batch, and none of them was counted.
//
// # What is not guaranteed
//
// A write whose response is lost (a timeout after the API server applied it)
// is reported as an error although the incidents were counted, and a caller
// that gives up after its incident was taken into a write may be counted
// too. A client that retries failed signals can therefore make the count
// exceed the acknowledged signals, never fall below them: acknowledged <=
// occurrenceCount <= sent. Deleting a request that is still in progress by
// hand lets the next signal start a new generation; nothing else removes one.
package dedup
