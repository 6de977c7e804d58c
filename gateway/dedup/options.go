package dedup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/backoff"
)

// LockMode says which writes a Recorder makes under the fingerprint's lock.
// Neither mode relies on the lock for correctness (see the package
// documentation); the lock only keeps replicas from spending attempts on
// write conflicts.
type LockMode string

const (
	// LockUpdates takes the lock for count updates only. A create needs no
	// lock: its deterministic name makes it atomic, and a replica that loses
	// the race gets AlreadyExists and counts into the winner's request on
	// its next attempt. This saves the lock's two writes on the first
	// occurrence of every incident.
	LockUpdates LockMode = "updates"
	// LockAll takes the lock for every write, as the original design did.
	LockAll LockMode = "all"
	// LockNone takes no lock: creates are fenced by their name and count
	// updates by their resourceVersion, and contention shows as
	// AlreadyExists or Conflict instead of a held lock.
	LockNone LockMode = "none"
)

// Options configures a Recorder. Zero values take the defaults documented
// on each field; withDefaults is the only place they live.
type Options struct {
	// Namespace of the RemediationRequests. Required.
	Namespace string
	// Identity names this process in the write ids it records on every
	// create and count update, such as the pod name; at most 253
	// characters. Default empty: the ids then carry only a random part
	// drawn when the Recorder is made, which keeps them unique but does not
	// say which replica wrote.
	Identity string
	// NamePrefix starts every RemediationRequest name:
	// "<NamePrefix>-<fingerprint>-<generation>".
	// A DNS-1123 label of at most 20 characters. Default "rr".
	NamePrefix string
	// Lock selects the writes made under the lock. Default LockNone: the
	// measurements in the package documentation show the lock adding API
	// calls and latency without saving conflicts.
	Lock LockMode
	// Policy spaces the attempts of one batch. Default: the original
	// design's schedule, 100ms doubling to a 1s cap with ±10% jitter.
	Policy backoff.Policy
	// MaxAttempts bounds the attempts of one batch, the first included.
	// Default 10.
	MaxAttempts int
	// Clock measures waits. Default clock.RealClock{}.
	Clock clock.Clock
	// Rand draws the jitter between the reads back of a write whose
	// outcome is unknown: uniform values in [0, 1), safe for concurrent
	// use. Replicas need sources that differ, or their reads back, after
	// one failure resets all their writes at once, stay in step. Default
	// math/rand/v2.Float64, which every process seeds at random.
	Rand func() float64
	// Registerer receives the gateway_dedup_* and gateway_retry_* metrics.
	// Nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Logger receives the workers' lines, with the fingerprint and request
	// name. A worker serves many callers, so it logs with this logger, not
	// with the logger of the request that happened to start it. Default:
	// discard.
	Logger logr.Logger
	// MaxCachedNames bounds the cache of each fingerprint's latest request
	// name, which saves a List on most attempts. Default 10,000.
	MaxCachedNames int

	// CriticalSectionDelay is a test-only hook, zero (off) by default: the
	// time to wait after taking the lock and before writing, so that a
	// fault test can kill or pause a replica while it certainly holds a
	// lock.
	CriticalSectionDelay time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.NamePrefix == "" {
		o.NamePrefix = "rr"
	}
	if o.Lock == "" {
		o.Lock = LockNone
	}
	if o.Policy == nil {
		p, err := backoff.NewExponential(backoff.Standard())
		if err != nil {
			return o, fmt.Errorf("default backoff policy: %w", err)
		}
		o.Policy = p
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 10
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.MaxCachedNames == 0 {
		o.MaxCachedNames = 10000
	}
	return o, nil
}

// maxIdentity keeps a write id ("<identity>/<8 hex>-<sequence>") within
// the 300 characters the CRD allows for one.
const maxIdentity = 253

func (o Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("Namespace is required"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("Namespace %q: %v", o.Namespace, msgs))
	}
	if len(o.Identity) > maxIdentity {
		errs = append(errs, fmt.Errorf("Identity is longer than %d characters", maxIdentity))
	}
	if len(o.NamePrefix) > 20 {
		errs = append(errs, fmt.Errorf("NamePrefix %q is longer than 20 characters", o.NamePrefix))
	} else if msgs := validation.IsDNS1123Label(o.NamePrefix); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("NamePrefix %q: %v", o.NamePrefix, msgs))
	}
	switch o.Lock {
	case LockUpdates, LockAll, LockNone:
	default:
		errs = append(errs, fmt.Errorf("Lock %q is not %q, %q or %q", o.Lock, LockUpdates, LockAll, LockNone))
	}
	if o.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d is below 1", o.MaxAttempts))
	}
	if o.MaxCachedNames < 1 {
		errs = append(errs, fmt.Errorf("MaxCachedNames %d is below 1", o.MaxCachedNames))
	}
	if o.CriticalSectionDelay < 0 {
		errs = append(errs, fmt.Errorf("CriticalSectionDelay %v is negative", o.CriticalSectionDelay))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dedup: invalid options: %w", err)
	}
	return nil
}
