package owner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
)

// Lookup results, the values of the result label of lookups_total. A lookup
// is one object of a chain.
const (
	resultHit    = "hit"    // answered from the cache (a remembered failure too)
	resultShared = "shared" // joined a request another Resolve had in flight
	resultMiss   = "miss"   // sent a request, which succeeded
	resultError  = "error"  // sent a request, which failed
)

// Resolve outcomes, the values of the outcome label of resolves_total.
const (
	outcomeOwner      = "owner"      // resolved to a different object, its top controller owner
	outcomeSelf       = "self"       // the object exists and has no controller owner
	outcomeRemembered = "remembered" // an object of the chain is gone; answered with the object's last resolution
	outcomeInferred   = "inferred"   // the object is gone; resolved through a candidate owner a lookup confirmed
	outcomeFallback   = "fallback"   // the chain could not be followed; see fallbacks_total
	outcomeError      = "error"      // a lookup did not complete; nothing guessed, see errors_total
	outcomeSkipped    = "skipped"    // not looked up: another cluster, a kind outside the table, a missing namespace
)

// Fallback reasons, the values of the reason label of fallbacks_total.
const (
	reasonNotFound      = "not_found"      // an object of the chain does not exist, and nothing remembered or confirmed stands in
	reasonRejected      = "rejected"       // the API server refused a request for good (a 4xx other than 401, 403, 408, 429)
	reasonOwnerReplaced = "owner_replaced" // the owner found has another UID than the reference
	reasonUnknownOwner  = "unknown_owner"  // an owner of a kind outside the table, or malformed
	reasonCycle         = "cycle"          // the chain came back to an object already seen
	reasonTooLong       = "too_long"       // more than MaxHops owners
	reasonAmbiguous     = "ambiguous"      // a gone Pod's name fits more than one existing owner
)

// Error reasons, the values of the reason label of errors_total and of
// LookupError.Reason.
const (
	reasonTimeout      = "timeout"      // a request ran out of time
	reasonUnavailable  = "unavailable"  // a 5xx, 429 or 408, or no answer (connection refused or reset)
	reasonForbidden    = "forbidden"    // the client may not read an object of the chain (403)
	reasonUnauthorized = "unauthorized" // the client's credentials were not accepted (401)
	reasonCanceled     = "canceled"     // the caller's context ended first
)

// metrics are the Cache's collectors. Labels are bounded enums; object
// names never appear in labels.
type metrics struct {
	lookups             *prometheus.CounterVec // result
	resolves            *prometheus.CounterVec // outcome
	fallbacks           *prometheus.CounterVec // reason
	errors              *prometheus.CounterVec // reason
	evictions           prometheus.Counter
	resolutionEvictions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, namespace string) (*metrics, error) {
	const sub = "owner"
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "lookups_total",
			Help: "Objects looked up while resolving owners, by result: hit (cache), shared (joined a request in flight), miss (request succeeded), error (request failed). miss+error is the number of API requests.",
		}, []string{"result"}),
		resolves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "resolves_total",
			Help: "Resolve calls by outcome: owner, self (no controller owner), remembered (object gone, last resolution), inferred (object gone, candidate owner confirmed), fallback (chain not followed, object returned), error (lookup not completed, nothing returned), skipped (not looked up).",
		}, []string{"outcome"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "fallbacks_total",
			Help: "Resolve calls that returned the object itself because the chain could not be followed, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "errors_total",
			Help: "Resolve calls that returned an error because a lookup did not complete, by reason.",
		}, []string{"reason"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "cache_evictions_total",
			Help: "Cache entries evicted, unexpired, to stay within MaxEntries.",
		}),
		resolutionEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "resolution_evictions_total",
			Help: "Remembered resolutions evicted, unexpired, to stay within MaxEntries.",
		}),
	}
	// Series exist from the start, so that rates over a fresh process are
	// defined and dashboards show zeros rather than gaps.
	for _, v := range []string{resultHit, resultShared, resultMiss, resultError} {
		m.lookups.WithLabelValues(v)
	}
	for _, v := range []string{outcomeOwner, outcomeSelf, outcomeRemembered, outcomeInferred, outcomeFallback, outcomeError, outcomeSkipped} {
		m.resolves.WithLabelValues(v)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.lookups, &err)
	collector.Register(reg, &m.resolves, &err)
	collector.Register(reg, &m.fallbacks, &err)
	collector.Register(reg, &m.errors, &err)
	collector.Register(reg, &m.evictions, &err)
	collector.Register(reg, &m.resolutionEvictions, &err)
	if err != nil {
		return nil, fmt.Errorf("owner: register metrics: %w", err)
	}
	return m, nil
}
