package owner

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// failure is what the failure of a lookup, or of a walk up a chain, means
// for the answer. It is the one decision between answering, guessing and
// refusing to guess.
type failure int

const (
	// noFailure: the walk reached the workload.
	noFailure failure = iota
	// gone: an object of the chain does not exist (NotFound, or an owner
	// replaced by another object of its name). The answer is taken from
	// what remains: a remembered resolution; when the object itself is
	// gone, a candidate owner confirmed by a lookup; when a Pod's
	// ReplicaSet is gone, the Deployment its name implies; only then the
	// object itself.
	gone
	// unknowable: the lookup did not complete (a timeout, a 5xx or 429,
	// no connection, the caller stopped waiting) or was refused (403,
	// 401: the gateway's permissions or credentials are wrong). The
	// object may well have an owner; falling back to the object would
	// split its incident, so Resolve returns an error instead.
	unknowable
	// permanent: the chain cannot be followed and asking again would not
	// change that (another 4xx, an owner of a kind outside the table, a
	// cycle, a chain too long). Resolve falls back to the object itself.
	permanent
)

// errCallerDone marks a lookup abandoned because the caller's context
// ended, as opposed to a request that ran out of its own time.
var errCallerDone = errors.New("caller stopped waiting")

// classify tells what a failed lookup means, and its reason: the label of
// errors_total for unknowable failures, of fallbacks_total for the others.
// A nil error is noFailure.
func classify(err error) (failure, string) {
	switch {
	case err == nil:
		return noFailure, ""
	case errors.Is(err, errCallerDone), errors.Is(err, context.Canceled):
		return unknowable, reasonCanceled
	case apierrors.IsNotFound(err):
		return gone, reasonNotFound
	case apierrors.IsForbidden(err):
		return unknowable, reasonForbidden
	case apierrors.IsUnauthorized(err):
		return unknowable, reasonUnauthorized
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return unknowable, reasonTimeout
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := int(st.Status().Code)
		if code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout {
			return permanent, reasonRejected
		}
	}
	// A 5xx, a 429, a 408, or no answer at all (connection refused or
	// reset, DNS, TLS): the next attempt may succeed.
	return unknowable, reasonUnavailable
}
