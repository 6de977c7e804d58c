package backoff

import "time"

// Exponential is the original design's policy: the nominal delay
// BasePeriod x Multiplier^(attempt-1), capped at MaxPeriod, then moved by up to
// ±JitterPercent, then clamped into [BasePeriod, MaxPeriod].
//
// The clamp keeps the schedule's promises (never shorter than the base, never longer
// than the cap) at the cost of uniformity: at the first attempt the lower half of the
// band collapses onto BasePeriod, and once the cap is reached the upper half
// collapses onto MaxPeriod.
type Exponential struct {
	s schedule
}

var _ Policy = (*Exponential)(nil)

// NewExponential validates c, fills its zero fields with defaults and returns the
// policy.
func NewExponential(c Config) (*Exponential, error) {
	s, err := c.resolve()
	if err != nil {
		return nil, err
	}
	return &Exponential{s: s}, nil
}

// Delay returns Calculate(attempt); prev is not needed because the schedule is a
// function of the attempt number alone.
func (e *Exponential) Delay(attempt int, prev time.Duration) time.Duration {
	return e.Calculate(attempt)
}

// Calculate returns the jittered delay for attempt (1-based; values below 1 count
// as 1). The result always lies in [BasePeriod, MaxPeriod].
func (e *Exponential) Calculate(attempt int) time.Duration {
	f := e.s.nominal(attempt)
	if !e.s.noJitter {
		f *= 1 + e.s.jitter*(2*e.s.random()-1)
	}
	return clamp(f, e.s.base, e.s.max)
}

// CalculateWithoutJitter returns the nominal delay for attempt, the centre of the
// band Calculate draws from. It ignores NoJitter and never consults Rand.
func (e *Exponential) CalculateWithoutJitter(attempt int) time.Duration {
	return clamp(e.s.nominal(attempt), e.s.base, e.s.max)
}
