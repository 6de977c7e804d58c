package backoff

import (
	"fmt"
	"math"
	"time"
)

// FullJitter draws each delay uniformly from [0, min(MaxPeriod,
// BasePeriod x Multiplier^(attempt-1))], the "full jitter" of the AWS Architecture
// Blog study of backoff under contention. JitterPercent is not used. A delay of zero
// is possible and intended: it is what spreads contenders furthest apart.
type FullJitter struct {
	s schedule
}

var _ Policy = (*FullJitter)(nil)

// NewFullJitter validates c and returns the policy. NoJitter is an error here: a
// full-jitter policy without randomness would be a different policy
// (NewExponential with NoJitter), and silently becoming it would hide the mistake.
func NewFullJitter(c Config) (*FullJitter, error) {
	s, err := resolveRandom(c, "FullJitter")
	if err != nil {
		return nil, err
	}
	return &FullJitter{s: s}, nil
}

// Delay returns a uniform draw from [0, min(MaxPeriod, BasePeriod x
// Multiplier^(attempt-1))]. prev is not used.
func (f *FullJitter) Delay(attempt int, prev time.Duration) time.Duration {
	return clamp(f.s.random()*f.s.nominal(attempt), 0, f.s.max)
}

// Decorrelated draws each delay uniformly from [BasePeriod, max(BasePeriod,
// 3 x prev)] and caps it at MaxPeriod: the AWS "decorrelated jitter". Its delays grow
// roughly like an exponential schedule, but each one depends on the previous draw
// rather than on the attempt number, so contenders that collided once drift apart.
//
// The state lives with the caller, which passes the previous delay back in; Retry
// does this. A caller that always passes prev = 0 gets BasePeriod every time.
// Multiplier and JitterPercent are not used.
type Decorrelated struct {
	s schedule
}

var _ Policy = (*Decorrelated)(nil)

// NewDecorrelated validates c and returns the policy. NoJitter is an error, for the
// same reason as in NewFullJitter.
func NewDecorrelated(c Config) (*Decorrelated, error) {
	s, err := resolveRandom(c, "Decorrelated")
	if err != nil {
		return nil, err
	}
	return &Decorrelated{s: s}, nil
}

// Delay returns min(MaxPeriod, uniform in [BasePeriod, max(BasePeriod, 3 x prev)]).
// attempt is not used. The arithmetic is in float64, so a huge prev cannot
// overflow; a negative prev counts as zero.
func (d *Decorrelated) Delay(attempt int, prev time.Duration) time.Duration {
	lo := float64(d.s.base)
	hi := math.Max(lo, 3*float64(prev))
	return clamp(lo+d.s.random()*(hi-lo), d.s.base, d.s.max)
}

func resolveRandom(c Config, name string) (schedule, error) {
	s, err := c.resolve()
	if err != nil {
		return schedule{}, err
	}
	if s.noJitter {
		return schedule{}, fmt.Errorf("%w: NoJitter is set but %s is random by definition; use NewExponential for a deterministic schedule or inject Rand for reproducible draws", ErrInvalidConfig, name)
	}
	return s, nil
}
