// Package gateway is the HTTP front end that turns alert signals into
// RemediationRequests: it authenticates the sender, decodes the payload
// (package signal), resolves each signal's workload (package owner) and
// records it (package dedup), then answers with what happened.
//
//	srv, err := gateway.New(gateway.Config{
//		Dedup:         recorder,
//		Resolver:      resolver,
//		Cluster:       "prod-eu",
//		TokenReviewer: clientset.AuthenticationV1().TokenReviews(),
//		Registerer:    registry,
//	})
//	err = srv.ListenAndServe(ctx) // until ctx ends, then a graceful shutdown
//
// # Routes
//
//   - POST /api/v1/signals/alertmanager: an Alertmanager webhook (version 4),
//     one entry per alert.
//   - POST /api/v1/signals/kubernetes-event: one core/v1 or events.k8s.io/v1
//     Event.
//   - GET /healthz: the process is alive.
//   - GET /readyz: the API server is reachable (Config.ReadyCheck) and the
//     server is not shutting down.
//   - GET /metrics: Prometheus metrics of Config.Gatherer.
//
// A signal request is checked in this order: method (405 with Allow),
// bearer token (401; 403 when the access review says no), Content-Type
// (415 unless application/json, parameters allowed), body size (413 over
// MaxBodyBytes), payload (400). Every error answer is an RFC 7807
// application/problem+json body (type Problem); a 400 about one field names
// it in the "field" member.
//
// # Answers
//
// A payload with one entry is answered with that entry's code: 201 when it
// created a RemediationRequest, 202 when it joined an existing one (both
// bodies name the request and its occurrence count), 200 when it was
// ignored (a resolved alert, a Normal event; the body says why), 400 when it
// was invalid. A payload with several entries is answered 207 with one
// Result per entry when every entry was handled (a rejected entry counts as
// handled: sending it again would not help).
//
// If any entry could not be recorded, the whole payload is answered with an
// error, and no entry of it is acknowledged: 503 with Retry-After when the
// entry was certainly not counted, because the deduplicator was busy
// (dedup.ErrBusy), the API server failed (dedup.ErrUnavailable), too many
// signals are in flight (MaxInFlight), the workload of the entry's object
// could not be determined (owner.ErrUnresolved: an owner lookup timed out,
// failed with a 5xx or 429, found no API server, or was refused with 403
// or 401; problem type owner-unresolved, whose detail names the object
// and the reason), or the request's deadline (RequestTimeout) passed
// before the entry was taken into a write (dedup.ErrNotRecorded) or while
// the token was still being reviewed (problem type deadline-exceeded for
// both); 504 without Retry-After only
// when the entry may have been counted: a write failed without saying
// whether it was applied and reading it back until dedup.MaxOutcomeWait
// after the write did not settle it (dedup.ErrUnknownOutcome; problem type
// unavailable; an API server that restarts within that time settles it), or a Deduplicator
// that does not say ran into the deadline (deadline-exceeded); 500 for
// anything else. An entry whose write is in flight when the deadline
// passes is answered with that write's outcome, up to dedup.MaxOutcomeWait
// late. When several entries failed, an unknown outcome decides the
// answer. This follows the senders: Alertmanager treats any 2xx as delivered,
// resends the whole webhook after a 5xx (ignoring Retry-After) and drops it
// after a 4xx. So answering 2xx for a partly recorded webhook would lose the
// rest, every failure worth retrying is a 5xx (an API server that cannot
// review a token included: 503, not 401), and only what no retry can fix is
// a 4xx. Once one entry has failed, entries not yet started are not started.
//
// An unresolved owner is answered 503 rather than recorded under the
// object the signal named: that would open a second RemediationRequest,
// and a second execution under another lock, for a workload whose
// incident already has one. A missing permission is a misconfiguration,
// not a transient fault, but it is answered the same way, loudly and
// without counting, for the same reason; the signals are counted once the
// permission is granted and the senders retry.
//
// # What the count means under faults
//
// For one incident, let sent be its firing signals delivered to the
// gateway, retries included, acknowledged those answered 2xx, and
// occurrenceCount the count on its RemediationRequest. Then
//
//	acknowledged <= occurrenceCount <= sent
//
// A signal answered 2xx is durably counted exactly once (the deduplicator
// returned success). A single-entry payload answered 503 was not counted,
// and sending it again is safe; one answered 504 may have been counted. A
// failed multi-entry payload may come after some of its other entries were
// counted; the sender's retry counts them again. So a retried fault
// over-counts, by at most the entries of the payloads that failed with 504
// or in a batch, and never under-counts (see package dedup for the window
// in which even a 503 may follow a counted write).
//
// # Load
//
// A webhook's firing entries are recorded concurrently, at most
// BatchConcurrency at a time; identical fingerprints are coalesced by the
// deduplicator, not here. Every recording holds a slot of MaxInFlight; a
// request reserves all of its slots at once or is answered 503 at once:
// under overload the gateway sheds load with an answer the senders retry,
// instead of queueing until every request times out.
//
// # Authentication
//
// On by default: the bearer token is validated with a TokenReview that asks
// for Config.Audience (default "leasehold-gateway") and requires it in the
// answer's status.audiences, so a token issued for the API server itself,
// which could be replayed against it, is refused; with Config.AccessReview a
// SubjectAccessReview must also allow the user to create
// remediationrequests.leasehold.dev in Config.Namespace. Decisions are cached
// under the SHA-256 of the token, accepted and rejected ones in separate
// caches (allowed for AuthCacheTTL, rejected for AuthCacheNegativeTTL; API
// errors are not cached), so a token revoked or a permission withdrawn keeps
// working for up to AuthCacheTTL, and rejections never push an accepted
// token out. Concurrent requests with the same token share one review. When
// the API server cannot be asked, the answer is 503 with Retry-After.
// /healthz, /readyz and /metrics are not authenticated.
// Config.InsecureNoAuth turns authentication off for local runs, with a
// warning in the log.
//
// What unauthenticated traffic can cost the API server is bounded: a token
// that is not shaped like an RFC 6750 bearer token (or is longer than 8 KiB)
// is answered 401 without a review, and at most Config.MaxTokenReviews
// reviews of uncached tokens run at once; a request that finds them all
// taken is answered 503 with Retry-After at once (problem type
// authentication-busy), never queued. Tokens accepted before whose cache
// entry expired have as many slots of their own (the known pool), so a
// flood of unknown tokens does not lock out a known sender that keeps its
// token. A sender whose token changed (a rotated projected token, or the
// first request of a token to this replica) is also known if its token is
// a JWT whose issuer and subject (iss, sub) are those of a token this
// replica accepted before (the last Config.AuthCacheSize subjects
// accepted). Those claims are read without checking the signature, so
// anyone can name a known subject: such tokens get at most one review of
// the known pool in flight per subject, and all together at most half of
// it (MaxTokenReviews/2, rounded down), and otherwise compete with unknown
// tokens. The TokenReview still decides; the claims only choose the pool.
// So during a flood of unknown tokens:
//
//   - a token accepted before is reviewed again from the known pool, of
//     which forged claims can take at most half;
//   - a known sender's new token is reviewed, unless a review of another
//     token naming its subject (a forgery, or its own other new token) is
//     in flight, or half the known pool already serves such tokens: a
//     forger naming known subjects can delay a real rotation, by one
//     review at a time, never lock out the tokens accepted before;
//   - a sender this replica never accepted (a first-ever sender, every
//     sender after the gateway restarts, a token that is not a JWT with
//     iss and sub) competes with the flood and may be answered
//     authentication-busy until the flood ends.
//
// The rate of the
// reviews is the concern of the TokenReviewer's client: `leasehold gateway`
// gives reviews and the readiness check clients with rate limiters of their
// own, apart from the one that writes RemediationRequests and Leases.
// Not bounded here: the CPU a flood costs the gateway itself (TLS, parsing);
// that is the concern of whatever is in front of it.
//
// # Shutdown
//
// Serve, once its context ends, fails /readyz, stops accepting, and gives
// the requests in flight ShutdownTimeout to finish; then it cancels them
// and closes their connections. A handler whose entry is in a write still
// waits for that write's outcome (at most dedup.MaxOutcomeWait), so that
// the write is never abandoned half-known. Serve returns after the last
// handler has returned, up to ShutdownTimeout + dedup.MaxOutcomeWait after
// its context ended, so the caller may then close what the handlers used
// (the deduplicator's locker).
package gateway
