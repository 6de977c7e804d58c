package dedup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/signal"
)

// Incident is one signal after owner resolution: what a Deduplicator records.
type Incident struct {
	// Fingerprint is Fingerprint(Target).
	Fingerprint string
	// Target is the resolved workload; SignalTarget the object the signal
	// named (often a Pod of Target).
	Target       v1alpha1.TargetRef
	SignalTarget v1alpha1.TargetRef
	// Signal is the decoded signal; its name, severity, labels and
	// annotations go into a new RR's spec.
	Signal signal.Signal
	// ReceivedAt is when the gateway received the signal.
	ReceivedAt time.Time
}

// Outcome is what happened to one recorded incident. It is a bounded metric
// label value.
type Outcome string

const (
	// Created: this incident created a new RemediationRequest.
	Created Outcome = "created"
	// Duplicate: this incident was absorbed into an existing, non-terminal
	// RemediationRequest, whose occurrence count now includes it.
	Duplicate Outcome = "duplicate"
)

// Result is the answer to one Record call.
type Result struct {
	Outcome Outcome
	// Name of the RemediationRequest the incident created or joined.
	Name string
	// OccurrenceCount of that request right after this incident was
	// counted; with coalescing it includes the whole batch written with it.
	OccurrenceCount int64
}

// Deduplicator turns incidents into RemediationRequests: exactly one
// non-terminal request per fingerprint, whose occurrence count includes
// every incident recorded for it. Implementations are safe for concurrent
// use by many goroutines and many processes.
type Deduplicator interface {
	// Record counts one incident. On success the incident is durably
	// counted, exactly once. An error matching ErrUnknownOutcome means it
	// may have been counted; any other error from the Recorder means it was
	// not, and sending it again is safe. Implementations that cannot tell
	// may return other errors with either meaning; callers should treat an
	// unclassified error as "may have been counted".
	Record(ctx context.Context, in Incident) (Result, error)
}

// Errors callers branch on with errors.Is. The HTTP layer maps ErrBusy,
// ErrUnavailable and ErrNotRecorded to 503 with Retry-After (not counted,
// safe to send again), and ErrUnknownOutcome to 504 (may have been counted).
var (
	// ErrBusy: the retry budget ran out while other writers held the
	// fingerprint (lock held, write conflicts). The error names the
	// fingerprint.
	ErrBusy = errors.New("dedup: retry budget exhausted")
	// ErrUnavailable: the API server failed a request for a reason other
	// than contention (unreachable, 5xx, forbidden).
	ErrUnavailable = errors.New("dedup: API server unavailable")
	// ErrClosed: the Recorder is shutting down (wrapped with ErrUnavailable,
	// so that the caller's client retries against another replica).
	ErrClosed = errors.New("dedup: shutting down")
	// ErrNotRecorded: the caller's context ended before its incident was
	// taken into a write, so it was certainly not counted. The error wraps
	// the context's cause.
	ErrNotRecorded = errors.New("dedup: not recorded")
	// ErrUnknownOutcome: a write that counts the incident failed without
	// saying whether the API server applied it (a reset connection, a lost
	// response), and reading the request back did not tell either. The
	// incident may have been counted; it is the only error after which it
	// may have been. The error wraps the write's error.
	ErrUnknownOutcome = errors.New("dedup: outcome of the write unknown")
)

// Fingerprint identifies an incident's workload: the lowercase hex SHA-256
// over cluster, API group, kind, namespace and name of target, the parts of
// its lock key (TargetRef.LockKey). The group tells apart objects that
// share a kind and a name, such as a core Service and a Knative Service
// "shop/cart"; the version is left out on purpose, so that a workload keeps
// its fingerprint across API versions. Alert names are left out too: every
// alert about one workload is one incident.
func Fingerprint(target v1alpha1.TargetRef) string {
	h := sha256.New()
	for _, part := range []string{target.Cluster, target.Group(), target.Kind, target.Namespace, target.Name} {
		// A separator that cannot occur in any of the parts keeps
		// ("a","bc") and ("ab","c") apart.
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
