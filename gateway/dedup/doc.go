// Package dedup turns incidents into RemediationRequests: exactly one
// request per incident that is still in progress, with an occurrence count
// that includes every signal recorded for it, however many gateway
// replicas and however many concurrent copies of a signal there are.
//
// An incident is the workload a signal resolved to, named by its
// Fingerprint: a hash of cluster, API group, kind, namespace and name, the
// same parts as the target's lock key. Two objects that differ only in
// group (a core Service and a Knative Service of one name) are two
// incidents; two API versions of one object, or two alerts about it, are
// one. Fingerprints made before the group counted differ from today's, so
// a request opened by an older gateway is not joined by a newer one's
// signals; the newer one opens a request of its own, which the
// orchestrator runs after the older one on the same target.
//
// Upgrade the gateways before the CRDs. Today's CRD defaults a new
// request's status to a count of one with no signal names; a gateway older
// than that default reads it as a complete record, and its first count
// update stores the second signal's name without the first one's. A newer
// gateway fills what a missing or defaulted record lacks from the spec, so
// it works with the older CRD too.
//
// # What makes it exact
//
// Correctness rests on two atomic API server operations, not on the lock:
//
//   - Creates are fenced by the name. The requests of one fingerprint are
//     named "<prefix>-<fingerprint>-<generation>", and generation
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
// A lease lock per fingerprint (lease prefix "gw-lock") can serialise the
// writers of one fingerprint, so that they wait for each other instead of
// meeting as AlreadyExists or Conflict. It costs two writes (create and
// delete of the Lease), and a held lock costs a failed create and a read.
// Options.Lock chooses: LockNone (the default) takes no lock, LockUpdates
// takes it for count updates only, LockAll for every write as the original
// design did. Measured with `leasehold storm` against 3 gateway processes on
// one 2-core machine, the lock never paid for itself:
//
//	scenario                     mode     API calls/signal  signals/s  p99
//	100 identical signals        none     0.14              500        197 ms
//	                             updates  0.22              597        166 ms
//	                             all      0.26              408        244 ms
//	2,000 distinct, conc. 50     none     3.0               249        530 ms
//	                             updates  3.0               148        881 ms
//	                             all      5.0               73         1453 ms
//	1,000 over 20, conc. 50      none     2.1               207        1606 ms
//	                             updates  4.9               76         4165 ms
//	                             all      4.5               97         4709 ms
//
// A conflict loses one write of a few milliseconds; a held lock makes the
// other replicas wait out a backoff while the holder spends four calls.
// Every mode is equally exact, since none relies on the lock.
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
// # Writes whose outcome is unknown
//
// A write can fail after the API server applied it: the connection is reset
// or the response lost, or a deadline passes while the server works.
// Answering such a failure with ErrUnavailable would make the sender retry
// a signal that was counted, and count it twice. So every write carries a
// write id, "<Options.Identity>/<random>-<sequence>": a create in the
// annotation leasehold.dev/write-id, a count update in
// status.deduplication.recentWrites, which keeps the last 16.
//
// A failed write is taken as not applied only when its error proves it: an
// API status the server answers before storage (400, 401, 403, 404, 409,
// 422, 429 and a few more; a 503 only with the server's own Status body,
// not a proxy's), a failure to connect, or an error the client raised
// before sending. Every other error, recognised or not, leaves the outcome
// open and is resolved by reading the request back. The read back is
// bounded by time, not by a number of reads: it reads 100ms to 1s apart,
// each read with its own deadline, until a read settles what is there or
// MaxOutcomeWait has passed since the write was sent. The waits between
// reads are drawn with decorrelated jitter from Options.Rand: a failure
// that resets many writes at once (an API server killed) would otherwise
// have every one of them, on every replica, read back at the same
// instants, a burst each time into a server that is coming back. A read
// fails without settling anything on any error but the API server's own
// NotFound for the object: a refused or reset connection, a deadline, 429
// and 5xx, 401 and 403, and a 404 without an API Status (what a restarted
// server answers for a resource whose handler it has not installed yet).
// An API server that restarts refuses connections for seconds and then
// answers 503 until it is ready, and the writes in flight when it went
// down are learned once it is back. Then:
//
//   - the id is there: the write was applied, and the batch is answered as
//     after a success;
//   - the read succeeds and the id is provably not there: it was not
//     applied, and the batch is retried, at the cost of one attempt;
//   - no read succeeds within the budget, or the read cannot prove
//     absence: the batch is answered ErrUnknownOutcome, the only error
//     after which an incident may have been counted.
//
// A 429 proves that a write was not applied only if it reaches the
// Recorder. The API server's flow control refuses a write it does not
// admit with 429 and a Retry-After of 1 to 32 seconds; client-go would
// sleep that out inside the call and send the write again until the
// write's deadline ended the call with a bare deadline, which is
// ambiguous: read back for the whole budget and answered ErrUnknownOutcome
// (504) for a write that was never applied. A client built with
// internal/kubeclient drops Retry-After from 429 answers to writes, so
// client-go returns the 429 at once, and the batch fails with
// ErrUnavailable (503 with Retry-After: not counted) without a read back.
//
// An update's id leaves the ring once 16 later updates landed. Each of them
// adds at least one to the count, so an absent id with a count below ours
// + 16 means not applied; at or above that the outcome is unknown. An
// empty ring on a request that changed since the update's read proves
// nothing either: an API server whose CRD predates the field drops it (the
// gateway was upgraded before the CRD), and so would an older writer.
//
// Every read and write has a deadline of its own on Options.Clock (5s per
// read, 10s per write), since client-go may retry one call internally
// after a 429 or 5xx with Retry-After (only a read, through
// internal/kubeclient). A client built with
// internal/kubeclient waits out at most 1s of a Retry-After to a read, so
// a restarting server's Retry-After: 5 does not spend a read's deadline.
// A caller whose context ends before its incident was taken into a write
// gets ErrNotRecorded: not counted. Once taken, the caller waits for the
// write's answer instead, at most MaxOutcomeWait (42.5s: the write and
// reading it back) past the end of its context.
//
// # What is not guaranteed
//
// An answer other than ErrUnknownOutcome is exact only if a write the API
// server has not applied when the read back is served is never applied
// afterwards. A write the server is still processing then (the client gave
// up first, while etcd was slow) can land after the read showed it absent
// and before the retry's own write: the retry then counts its incidents a
// second time. (A late update still carries its resourceVersion, so it can
// only land while the request is as the update's own read saw it.) The
// window is the server's processing time of one request. Under that fault,
// and for ErrUnknownOutcome answers that the sender retries, the count can
// exceed the acknowledged signals, never fall below them: acknowledged <=
// occurrenceCount <= sent.
//
// The ring assumes that every writer of status.deduplication keeps
// recentWrites. A writer built before the field existed drops it; once a
// newer writer has appended to the emptied ring again, an update whose id
// was dropped reads back as not applied.
//
// client-go retries a write inside one call after a 5xx answer that
// carries Retry-After (the API server's ServerTimeout does). If the first
// try was applied, the retry would fail with Conflict (an update) or
// AlreadyExists (a create), read as "not applied", and the batch would be
// counted again. A client built with internal/kubeclient never does that:
// its transport drops Retry-After from 5xx and 429 answers to writes. A
// client built otherwise reopens the window, and turns writes refused with
// 429 under overload into ErrUnknownOutcome answers (see above).
//
// The name fence assumes that the highest generation of a fingerprint is
// never deleted, so that "max + 1" cannot go backwards; the orchestrator's
// retention keeps it for that reason. It also assumes that terminal phases
// are final, which the CRD enforces. Deleting requests by hand can break
// the first assumption, and so can a writer that stays paused between its
// read and its create for longer than the retention age (a day by default).
package dedup
