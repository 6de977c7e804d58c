package baseline

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/backoff"
)

// Options configures a Dedup. Zero values take the defaults documented on
// each field; withDefaults is the only place they live.
type Options struct {
	// Namespace of the RemediationRequests and the Leases. Required.
	Namespace string
	// Identity is the holder identity written into Leases: the pod, as in
	// the original design (not the request, which is its first flaw).
	// Required, and distinct per replica.
	Identity string
	// LeaseDuration is written into every Lease, in whole seconds. Default
	// 30s, the original's.
	LeaseDuration time.Duration
	// Policy spaces the lock attempts. Default: 100ms doubling to a 1s cap
	// with ±10% jitter (backoff.Standard()).
	Policy backoff.Policy
	// MaxAttempts bounds the lock attempts, the first included. Default 10.
	MaxAttempts int
	// CountPolicy spaces the tries of one count update after a Conflict.
	// Default: 10ms doubling, ±10% jitter, the original's short retry.
	CountPolicy backoff.Policy
	// CountAttempts bounds the tries of one count update. Default 3.
	CountAttempts int
	// Clock is the local clock: renewTime of new Leases, the expiry check
	// against a remote renewTime, and the waits. Default clock.RealClock{}.
	Clock clock.Clock
}

func (o Options) withDefaults() (Options, error) {
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 30 * time.Second
	}
	if o.Policy == nil {
		p, err := backoff.NewExponential(backoff.Standard())
		if err != nil {
			return o, fmt.Errorf("default policy: %w", err)
		}
		o.Policy = p
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 10
	}
	if o.CountPolicy == nil {
		p, err := backoff.NewExponential(backoff.Config{
			BasePeriod:    10 * time.Millisecond,
			MaxPeriod:     40 * time.Millisecond,
			Multiplier:    2,
			JitterPercent: 10,
		})
		if err != nil {
			return o, fmt.Errorf("default count policy: %w", err)
		}
		o.CountPolicy = p
	}
	if o.CountAttempts == 0 {
		o.CountAttempts = 3
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o, nil
}

func (o Options) validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("Namespace %q: %v", o.Namespace, msgs))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("Identity is required: it is the Lease holder"))
	}
	if o.LeaseDuration < time.Second || o.LeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("LeaseDuration %v is not a whole number of seconds of at least 1", o.LeaseDuration))
	}
	if o.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d is below 1", o.MaxAttempts))
	}
	if o.CountAttempts < 1 {
		errs = append(errs, fmt.Errorf("CountAttempts %d is below 1", o.CountAttempts))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("baseline: invalid options: %w", err)
	}
	return nil
}
