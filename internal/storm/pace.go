package storm

import (
	"context"
	"math"
	"time"

	"k8s.io/utils/clock"
)

// pacer holds back the first attempts of a storm to a rate. The schedule is
// absolute: signal i is due at start + i/rate, whatever happened to the
// signals before it, so delays (a slow gateway, all workers busy) are
// caught up instead of pushing every later signal back, and the storm's
// length stays what the rate says whenever the gateways keep up.
type pacer struct {
	clock clock.Clock
	start time.Time
	// rate is in signals per second; 0 means no pacing.
	rate float64
}

// wait returns when signal i is due, at once if it already is or the pacer
// does not pace, or when ctx ends. It uses a timer in a select on
// ctx.Done, so an ended storm is not held up by its schedule.
func (p pacer) wait(ctx context.Context, i int) {
	if p.rate == 0 || ctx.Err() != nil {
		return
	}
	d := p.offset(i) - p.clock.Since(p.start)
	if d <= 0 {
		return
	}
	t := p.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
	case <-ctx.Done():
	}
}

// offset is how long after the start signal i is due. It rounds up, so that
// no signal starts early by a fraction of a nanosecond, and saturates
// instead of overflowing for a rate so low that the storm would outlast a
// time.Duration: such a signal is in effect never due, and waits for ctx.
func (p pacer) offset(i int) time.Duration {
	d := math.Ceil(float64(i) * float64(time.Second) / p.rate)
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
