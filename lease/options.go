package lease

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/backoff"
)

// Labels and annotations the Locker writes on every Lease it creates.
const (
	// LabelManagedBy is set to ManagedByValue on every Lease of a Locker.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "leasehold"
	// LabelPrefix holds Options.Prefix, so Leases of one lock family can be
	// listed and swept together.
	LabelPrefix = "leasehold.dev/lock-prefix"
	// AnnotationKey holds the raw key, for humans: the name is a hash.
	AnnotationKey = "leasehold.dev/key"
)

// maxPrefixLen keeps at least 32 hex digits (128 bits) of the key's SHA-256
// in a 63-character name.
const maxPrefixLen = 63 - 1 - 32

// Options configures a Locker. Zero values are replaced by the documented
// defaults in one place (withDefaults); New rejects invalid combinations.
type Options struct {
	// Namespace of the Leases. Required.
	Namespace string

	// Identity of this process, typically the pod name. Required. Each
	// acquisition writes its own holder id "<Identity>/<16 hex digits>" into
	// spec.holderIdentity, so two acquisitions never share a holder.
	Identity string

	// Prefix of Lease names, a DNS-1123 label of at most 30 characters.
	// Default "lock". Names are "<Prefix>-<hex of SHA-256(key)>", truncated
	// to 63 characters.
	Prefix string

	// LeaseDuration is written (rounded up to whole seconds) into
	// spec.leaseDurationSeconds; other processes take a Lease over after
	// observing it unchanged for that long. Default 30s; at least 1s.
	LeaseDuration time.Duration

	// RenewInterval is the period of renewals while a lock is held. Default
	// LeaseDuration/3. After a failed renewal the next attempt comes after
	// RenewInterval/4, until the safe deadline.
	RenewInterval time.Duration

	// SafetyMargin is subtracted from LeaseDuration to get the safe deadline
	// (send time of the last successful write + LeaseDuration -
	// SafetyMargin). It absorbs differences in clock rate between hosts.
	// Default LeaseDuration/10. It must be at least LeaseDuration/100
	// (minMarginDivisor): clocks disciplined by NTP differ in rate by at
	// most a few hundred parts per million, and a margin below 1% leaves
	// next to nothing for timer and scheduling delays. LeaseDuration must
	// exceed RenewInterval + SafetyMargin.
	SafetyMargin time.Duration

	// RequestTimeout bounds every API call (each gets its own
	// context.WithTimeout), so a black-holed connection never hangs an
	// acquisition or a renewal. It must be at most LeaseDuration -
	// SafetyMargin - RenewInterval: then the acquiring write, answered or
	// not, leaves at least RenewInterval of safe time before the first
	// renewal is due, and a renewal sent on schedule is answered or
	// abandoned by the safe deadline. A longer timeout would let an
	// acquisition return a lock whose safe deadline passed while its write
	// was in flight. Default 5s, or that bound if it is shorter (for
	// LeaseDuration 5s and the other defaults, 2.83s).
	RequestTimeout time.Duration

	// ReleaseTimeout bounds Release as a whole, including its wait for a
	// renewal in flight; Release runs on its own context derived from the
	// caller's values but not its cancellation. Default RequestTimeout.
	ReleaseTimeout time.Duration

	// Backoff spaces the rounds of Acquire while another process holds the
	// key; a watch on that one Lease wakes the waiter earlier on a change.
	// Default: full jitter, base 100ms, x2, capped at 1s. Only the upper
	// bound of the first rounds matters much: the watch, not the timer, is
	// what normally ends a wait.
	Backoff backoff.Policy

	// MaxLocalHandoffs bounds consecutive hand-offs to local waiters; the
	// next Release deletes the Lease so other processes get a turn.
	// Default 8; a negative value disables hand-offs.
	MaxLocalHandoffs int

	// LockDelay is an extra wait after taking over an expired Lease, before
	// Acquire returns. Default 0 (none). See the package documentation for
	// what it does and does not protect.
	LockDelay time.Duration

	// Clock is the source of time. It must carry a monotonic reading (the
	// real clock does). Default clock.RealClock{}.
	Clock clock.Clock

	// Registerer receives the metrics. Nil means metrics are kept but not
	// registered. Collectors already registered by another Locker with the
	// same MetricsNamespace are shared.
	Registerer prometheus.Registerer

	// MetricsNamespace prefixes metric names: <MetricsNamespace>_lock_*.
	// Default "leasehold".
	MetricsNamespace string

	// Labels are added to every Lease this Locker writes (for example the
	// owning application). They cannot override LabelManagedBy or
	// LabelPrefix.
	Labels map[string]string
}

// withDefaults returns o with zero values replaced by defaults. It is the
// only place defaults live.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = "lock"
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 30 * time.Second
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = o.LeaseDuration / 3
	}
	if o.SafetyMargin == 0 {
		o.SafetyMargin = o.LeaseDuration / 10
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
		if b := o.maxRequestTimeout(); b > 0 && b < o.RequestTimeout {
			o.RequestTimeout = b
		}
	}
	if o.ReleaseTimeout == 0 {
		o.ReleaseTimeout = o.RequestTimeout
	}
	if o.Backoff == nil {
		p, err := backoff.NewFullJitter(backoff.Config{
			BasePeriod: 100 * time.Millisecond,
			MaxPeriod:  time.Second,
			Multiplier: 2,
		})
		if err != nil {
			return o, fmt.Errorf("default backoff policy: %w", err)
		}
		o.Backoff = p
	}
	if o.MaxLocalHandoffs == 0 {
		o.MaxLocalHandoffs = 8
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MetricsNamespace == "" {
		o.MetricsNamespace = "leasehold"
	}
	return o, nil
}

// validate checks a defaulted Options.
func (o Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %v", o.Namespace, msgs))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("identity is required"))
	}
	if msgs := validation.IsDNS1123Label(o.Prefix); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("prefix %q: %v", o.Prefix, msgs))
	}
	if len(o.Prefix) > maxPrefixLen {
		errs = append(errs, fmt.Errorf("prefix %q: longer than %d characters", o.Prefix, maxPrefixLen))
	}
	if o.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("lease duration %v: must be at least 1s", o.LeaseDuration))
	}
	if o.LeaseDuration > math.MaxInt32*time.Second {
		errs = append(errs, fmt.Errorf("lease duration %v: too long", o.LeaseDuration))
	}
	if o.RenewInterval <= 0 {
		errs = append(errs, fmt.Errorf("renew interval %v: must be positive", o.RenewInterval))
	}
	if o.SafetyMargin < o.LeaseDuration/minMarginDivisor {
		errs = append(errs, fmt.Errorf("safety margin %v: must be at least 1/%d of the lease duration %v (%v)",
			o.SafetyMargin, minMarginDivisor, o.LeaseDuration, o.LeaseDuration/minMarginDivisor))
	}
	fits := o.LeaseDuration > o.RenewInterval+o.SafetyMargin
	if !fits {
		errs = append(errs, fmt.Errorf("lease duration %v must be greater than renew interval %v plus safety margin %v",
			o.LeaseDuration, o.RenewInterval, o.SafetyMargin))
	}
	if o.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %v: must be positive", o.RequestTimeout))
	} else if fits && o.RequestTimeout > o.maxRequestTimeout() {
		errs = append(errs, fmt.Errorf("request timeout %v: must be at most lease duration %v minus safety margin %v minus renew interval %v (%v)",
			o.RequestTimeout, o.LeaseDuration, o.SafetyMargin, o.RenewInterval, o.maxRequestTimeout()))
	}
	if o.ReleaseTimeout < 0 {
		errs = append(errs, fmt.Errorf("release timeout %v: must be positive", o.ReleaseTimeout))
	}
	if o.LockDelay < 0 {
		errs = append(errs, fmt.Errorf("lock delay %v: must not be negative", o.LockDelay))
	}
	for k, v := range o.Labels {
		if k == LabelManagedBy || k == LabelPrefix {
			errs = append(errs, fmt.Errorf("label %q is reserved", k))
			continue
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("label key %q: %v", k, msgs))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("label %q value %q: %v", k, v, msgs))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lease: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// minMarginDivisor: SafetyMargin must be at least LeaseDuration divided by
// it.
const minMarginDivisor = 100

// maxRequestTimeout is the longest RequestTimeout that still leaves a
// whole RenewInterval of safe time after the slowest acquiring write.
func (o Options) maxRequestTimeout() time.Duration {
	return o.LeaseDuration - o.SafetyMargin - o.RenewInterval
}

// durationSeconds is LeaseDuration rounded up to whole seconds: observers
// must never wait less than this Locker's safe deadline assumes.
func (o Options) durationSeconds() int32 {
	return int32((o.LeaseDuration + time.Second - 1) / time.Second)
}
