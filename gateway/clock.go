package gateway

import (
	"time"

	"k8s.io/utils/clock"
)

// NewOffsetClock is FOR TESTS ONLY. It returns a clock whose Now is base's
// plus offset, to simulate a replica whose wall clock is wrong; timers and
// tickers are base's, unchanged. With offset 0 it returns base.
//
// The offset keeps base's monotonic reading (time.Time.Add preserves it), so
// durations measured between two readings of the returned clock are exact:
// a process under test that judges expiry by its own monotonic clock, as the
// lease package does, must not be affected by it. Since is overridden for
// the same reason: base's Since would compare a shifted reading with an
// unshifted one.
func NewOffsetClock(base clock.WithTicker, offset time.Duration) clock.WithTicker {
	if offset == 0 {
		return base
	}
	return offsetClock{WithTicker: base, offset: offset}
}

type offsetClock struct {
	clock.WithTicker
	offset time.Duration
}

func (c offsetClock) Now() time.Time                  { return c.WithTicker.Now().Add(c.offset) }
func (c offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// offsetPassive is offsetClock for the passive clock of Config.
type offsetPassive struct {
	base   clock.PassiveClock
	offset time.Duration
}

func (c offsetPassive) Now() time.Time                  { return c.base.Now().Add(c.offset) }
func (c offsetPassive) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
