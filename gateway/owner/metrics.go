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
	outcomeOwner    = "owner"    // resolved to a different object, its top controller owner
	outcomeSelf     = "self"     // the object exists and has no controller owner
	outcomeFallback = "fallback" // the chain could not be followed; see fallbacks_total
	outcomeSkipped  = "skipped"  // not looked up: another cluster, a kind outside the table, a missing namespace
)

// Fallback reasons, the values of the reason label of fallbacks_total.
const (
	reasonNotFound      = "not_found"      // an object of the chain does not exist
	reasonForbidden     = "forbidden"      // the client may not read an object of the chain
	reasonTimeout       = "timeout"        // a request ran out of time
	reasonAPIError      = "api_error"      // any other failed request
	reasonCanceled      = "canceled"       // the caller's context ended first
	reasonOwnerReplaced = "owner_replaced" // the owner found has another UID than the reference
	reasonUnknownOwner  = "unknown_owner"  // an owner of a kind outside the table, or malformed
	reasonCycle         = "cycle"          // the chain came back to an object already seen
	reasonTooLong       = "too_long"       // more than MaxHops owners
)

// metrics are the Cache's collectors. Labels are bounded enums; object
// names never appear in labels.
type metrics struct {
	lookups   *prometheus.CounterVec // result
	resolves  *prometheus.CounterVec // outcome
	fallbacks *prometheus.CounterVec // reason
	evictions prometheus.Counter
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
			Help: "Resolve calls by outcome: owner, self (no controller owner), fallback (chain not followed, object returned), skipped (not looked up).",
		}, []string{"outcome"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "fallbacks_total",
			Help: "Resolve calls that returned the object itself because the chain could not be followed, by reason.",
		}, []string{"reason"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "cache_evictions_total",
			Help: "Cache entries evicted, unexpired, to stay within MaxEntries.",
		}),
	}
	// Series exist from the start, so that rates over a fresh process are
	// defined and dashboards show zeros rather than gaps.
	for _, v := range []string{resultHit, resultShared, resultMiss, resultError} {
		m.lookups.WithLabelValues(v)
	}
	for _, v := range []string{outcomeOwner, outcomeSelf, outcomeFallback, outcomeSkipped} {
		m.resolves.WithLabelValues(v)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.lookups, &err)
	collector.Register(reg, &m.resolves, &err)
	collector.Register(reg, &m.fallbacks, &err)
	collector.Register(reg, &m.evictions, &err)
	if err != nil {
		return nil, fmt.Errorf("owner: register metrics: %w", err)
	}
	return m, nil
}
