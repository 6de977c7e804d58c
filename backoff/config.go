package backoff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Policy computes the wait after a failed attempt. Implementations are safe for
// concurrent use: a policy holds configuration only, so one value can be shared by
// every request of a process.
type Policy interface {
	// Delay returns the wait after failed attempt `attempt` (1-based) before the next
	// attempt. prev is the delay this policy returned for the previous attempt (0 for
	// attempt 1); only decorrelated jitter uses it.
	Delay(attempt int, prev time.Duration) time.Duration
}

// ErrInvalidConfig is wrapped by every error a constructor or Retry returns for a
// configuration that cannot be used as given. Invalid values are reported, never
// replaced, so a typo in a duration does not silently become a default.
var ErrInvalidConfig = errors.New("backoff: invalid config")

// Defaults applied to zero fields of Config. They are the original design's
// values: long enough for controller-style retries of a Kubernetes API call.
const (
	defaultBasePeriod    = 30 * time.Second
	defaultMaxPeriod     = 5 * time.Minute
	defaultMultiplier    = 2.0
	defaultJitterPercent = 10.0
)

// Config describes an exponential schedule: BasePeriod x Multiplier^(attempt-1),
// capped at MaxPeriod. A zero field means its default; there is no way to ask for a
// zero BasePeriod or zero JitterPercent through a zero value (use NoJitter for the
// latter).
type Config struct {
	// BasePeriod is the wait after the first failed attempt and the smallest wait
	// Exponential and Decorrelated ever return. Default 30s when zero; negative is an
	// error.
	BasePeriod time.Duration
	// MaxPeriod caps every wait a policy computes. Default 5m when zero; negative or
	// less than BasePeriod (after defaults) is an error.
	MaxPeriod time.Duration
	// Multiplier is the growth factor between consecutive attempts. Default 2 when
	// zero; it must be a finite number >= 1 (1 gives a constant schedule).
	// Decorrelated ignores it and grows by up to 3x, as the AWS algorithm does.
	Multiplier float64
	// JitterPercent is the half-width of Exponential's jitter band, in percent of the
	// nominal delay. Default 10 when zero; it must lie in [0, 100]. It is checked even
	// where it is not used (NoJitter, FullJitter, Decorrelated), because an
	// out-of-range value is a mistake wherever it appears.
	JitterPercent float64
	// NoJitter makes Exponential deterministic: Calculate returns the nominal
	// schedule. FullJitter and Decorrelated are random by definition and refuse it;
	// inject Rand to make them reproducible in tests.
	NoJitter bool
	// Rand returns uniform values in [0, 1) and must be safe for concurrent use.
	// Default math/rand/v2.Float64. Values outside [0, 1] are clamped into it, so a
	// faulty source cannot push a delay outside its bounds.
	Rand func() float64
}

// Standard is the original design's policy for lock contention in a request path:
// 100ms doubling to a 1s cap, ±10% jitter.
func Standard() Config {
	return Config{BasePeriod: 100 * time.Millisecond, MaxPeriod: time.Second, Multiplier: 2, JitterPercent: 10}
}

// Aggressive retries sooner and grows faster: 50ms tripling to a 500ms cap, ±20%
// jitter.
func Aggressive() Config {
	return Config{BasePeriod: 50 * time.Millisecond, MaxPeriod: 500 * time.Millisecond, Multiplier: 3, JitterPercent: 20}
}

// Conservative starts later and grows slowly: 200ms, x1.5, to a 5s cap, ±10%
// jitter.
func Conservative() Config {
	return Config{BasePeriod: 200 * time.Millisecond, MaxPeriod: 5 * time.Second, Multiplier: 1.5, JitterPercent: 10}
}

// schedule is a validated Config with defaults filled in. It is immutable after
// construction, which is what makes every policy safe for concurrent use.
type schedule struct {
	base, max time.Duration
	mult      float64
	jitter    float64 // fraction, JitterPercent/100
	noJitter  bool
	rand      func() float64
}

// resolve fills defaults and validates, in that order and in this one place. It
// reports every problem at once rather than the first, so a bad config is fixed in
// one round.
func (c Config) resolve() (schedule, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}

	s := schedule{base: c.BasePeriod, max: c.MaxPeriod, mult: c.Multiplier, noJitter: c.NoJitter, rand: c.Rand}
	baseNote, maxNote := "", ""
	switch {
	case s.base < 0:
		bad("BasePeriod %v is negative", c.BasePeriod)
	case s.base == 0:
		s.base, baseNote = defaultBasePeriod, " (default)"
	}
	switch {
	case s.max < 0:
		bad("MaxPeriod %v is negative", c.MaxPeriod)
	case s.max == 0:
		s.max, maxNote = defaultMaxPeriod, " (default)"
	}
	if s.base > 0 && s.max > 0 && s.max < s.base {
		bad("MaxPeriod %v%s is less than BasePeriod %v%s", s.max, maxNote, s.base, baseNote)
	}

	if s.mult == 0 {
		s.mult = defaultMultiplier
	}
	if math.IsNaN(s.mult) || math.IsInf(s.mult, 0) || s.mult < 1 {
		bad("Multiplier %v must be a finite number >= 1", c.Multiplier)
	}

	pct := c.JitterPercent
	if pct == 0 {
		pct = defaultJitterPercent
	}
	if math.IsNaN(pct) || pct < 0 || pct > 100 {
		bad("JitterPercent %v must be within [0, 100]", c.JitterPercent)
	}
	s.jitter = pct / 100

	if s.rand == nil {
		s.rand = rand.Float64
	}
	if len(errs) > 0 {
		return schedule{}, errors.Join(errs...)
	}
	return s, nil
}

// nominal is base x mult^(attempt-1) capped at max, computed in float64 so that no
// attempt number can overflow: a huge power becomes +Inf and the cap takes it.
func (s schedule) nominal(attempt int) float64 {
	if attempt < 1 {
		attempt = 1
	}
	f := float64(s.base) * math.Pow(s.mult, float64(attempt-1))
	return math.Min(f, float64(s.max))
}

// random returns the injected source's next value clamped into [0, 1]; NaN maps
// to 0.
func (s schedule) random() float64 {
	r := s.rand()
	switch {
	case !(r > 0):
		return 0
	case r > 1:
		return 1
	}
	return r
}

// clamp rounds f to a Duration inside [lo, hi]. The float comparisons come first
// because converting a float64 at or above 2^63 to an int64 is undefined; the
// integer clamp after rounding absorbs float64's coarse spacing near the bounds.
func clamp(f float64, lo, hi time.Duration) time.Duration {
	switch {
	case math.IsNaN(f) || f <= float64(lo):
		return lo
	case f >= float64(hi):
		return hi
	}
	return min(max(time.Duration(math.Round(f)), lo), hi)
}
