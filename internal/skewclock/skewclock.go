// Package skewclock provides clocks whose wall-clock reading is off by a
// fixed offset. It exists for tests and local runs that simulate replicas
// whose host clocks disagree (the binaries' TEST ONLY --test-clock-offset
// flag); nothing in production should set an offset.
//
// Only the wall-clock reading moves. Timers, tickers and durations are the
// base clock's, unchanged: the offset keeps base's monotonic reading
// (time.Time.Add preserves it), so a duration measured between two readings
// of a skewed clock is exact, and code that judges expiry by its own
// monotonic clock, as package lease does, is not affected by the skew.
package skewclock

import (
	"time"

	"k8s.io/utils/clock"
)

// New returns a clock whose Now is base's plus offset; its timers and
// tickers are base's. With offset 0 it returns base itself.
func New(base clock.WithTicker, offset time.Duration) clock.WithTicker {
	if offset == 0 {
		return base
	}
	return skewed{WithTicker: base, offset: offset}
}

// NewPassive is New for a clock that only tells the time. With offset 0 it
// returns base itself.
func NewPassive(base clock.PassiveClock, offset time.Duration) clock.PassiveClock {
	if offset == 0 {
		return base
	}
	return skewedPassive{base: base, offset: offset}
}

type skewed struct {
	clock.WithTicker
	offset time.Duration
}

func (c skewed) Now() time.Time { return c.WithTicker.Now().Add(c.offset) }

// Since is overridden because base's Since would compare a skewed reading
// with an unskewed one and be off by the offset.
func (c skewed) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

type skewedPassive struct {
	base   clock.PassiveClock
	offset time.Duration
}

func (c skewedPassive) Now() time.Time                  { return c.base.Now().Add(c.offset) }
func (c skewedPassive) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
