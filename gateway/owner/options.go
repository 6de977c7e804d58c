package owner

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Options configures a Cache. Zero values take the documented defaults;
// negative durations and sizes are rejected by New.
type Options struct {
	// Cluster is the name of the cluster the client talks to. Objects whose
	// TargetRef names another cluster are returned as they are, without a
	// lookup. Required.
	Cluster string

	// TTL is how long a successful lookup of one object (its UID and its
	// controller reference, or the absence of one) is reused. Ownership
	// rarely changes, so the bound is on how long a deleted or re-created
	// owner keeps being reported. Default 30s.
	TTL time.Duration

	// NegativeTTL is how long a lookup that found no object (NotFound), or
	// that the API server refused for good (a 4xx other than 401, 403, 408
	// and 429), is reused before the object is asked for again. It keeps a
	// storm of signals about a deleted object from turning into a storm of
	// requests, and is shorter than TTL so that a new object is seen soon.
	// Default TTL/3.
	NegativeTTL time.Duration

	// ErrorTTL is how long a lookup that did not complete (a timeout, a
	// 5xx or 429, no connection, 403 or 401) is reused: for that long,
	// Resolve fails at once for the signals that need the object, without
	// a request. It bounds the request rate during an outage and is short
	// so that recovery is seen soon. Default 1s.
	ErrorTTL time.Duration

	// ResolutionTTL is how long the resolution of an object a signal named
	// is remembered after the last Resolve of that object, so that a
	// signal about an object deleted in the middle of its incident (a Pod
	// replaced) still resolves to the workload it had. Every Resolve of
	// the object renews it. Default 1h.
	ResolutionTTL time.Duration

	// MaxEntries bounds the number of objects remembered (each object of a
	// chain is one entry: a Pod of a Deployment takes three), and,
	// separately, the number of resolutions remembered. The least
	// recently used entry is evicted first. Default 10000.
	MaxEntries int

	// RequestTimeout bounds each API request (one per object of a chain
	// not in the cache). Default 2s.
	RequestTimeout time.Duration

	// Clock is the source of time for cache expiry. Default
	// clock.RealClock{}.
	Clock clock.PassiveClock

	// Registerer receives the metrics (see the package documentation). Nil
	// means metrics are kept but not registered. Collectors already
	// registered by another Cache with the same MetricsNamespace are
	// shared.
	Registerer prometheus.Registerer

	// MetricsNamespace prefixes metric names: <MetricsNamespace>_owner_*.
	// Default "leasehold".
	MetricsNamespace string
}

// Defaults, documented on the fields of Options.
const (
	DefaultTTL            = 30 * time.Second
	DefaultErrorTTL       = time.Second
	DefaultResolutionTTL  = time.Hour
	DefaultMaxEntries     = 10000
	DefaultRequestTimeout = 2 * time.Second
)

// MaxHops is the longest chain of owners followed. Real chains take two hops
// at most (Pod, ReplicaSet, Deployment; Pod, Job, CronJob); the bound turns
// a cycle or a runaway chain of hand-made references into a fallback rather
// than a loop.
const MaxHops = 8

// withDefaults returns o with zero values replaced by defaults. It is the
// only place defaults live.
func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = o.TTL / 3
	}
	if o.ErrorTTL == 0 {
		o.ErrorTTL = DefaultErrorTTL
	}
	if o.ResolutionTTL == 0 {
		o.ResolutionTTL = DefaultResolutionTTL
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MetricsNamespace == "" {
		o.MetricsNamespace = "leasehold"
	}
	return o
}

// validate checks a defaulted Options.
func (o Options) validate() error {
	var errs []error
	if o.Cluster == "" {
		errs = append(errs, errors.New("cluster is required"))
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("TTL %v: must not be negative", o.TTL))
	}
	if o.NegativeTTL <= 0 {
		// Also catches a TTL under 3ns, whose default third is zero.
		errs = append(errs, fmt.Errorf("negative TTL %v: must be positive", o.NegativeTTL))
	}
	if o.ErrorTTL < 0 {
		errs = append(errs, fmt.Errorf("error TTL %v: must not be negative", o.ErrorTTL))
	}
	if o.ResolutionTTL < 0 {
		errs = append(errs, fmt.Errorf("resolution TTL %v: must not be negative", o.ResolutionTTL))
	}
	if o.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("max entries %d: must not be negative", o.MaxEntries))
	}
	if o.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %v: must not be negative", o.RequestTimeout))
	}
	return errors.Join(errs...)
}
