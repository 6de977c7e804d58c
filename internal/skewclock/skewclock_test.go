package skewclock_test

import (
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/internal/skewclock"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNew(t *testing.T) {
	base := clocktesting.NewFakeClock(t0)
	if got := skewclock.New(base, 0); got != clock.WithTicker(base) {
		t.Error("offset 0 does not return the base clock")
	}
	c := skewclock.New(base, -time.Hour)
	start := c.Now()
	if !start.Equal(t0.Add(-time.Hour)) {
		t.Errorf("Now = %v, want %v", start, t0.Add(-time.Hour))
	}
	base.Step(3 * time.Second)
	if d := c.Since(start); d != 3*time.Second {
		t.Errorf("Since = %v, want 3s: the offset must cancel out", d)
	}
	// Timers are base's: one fires when base has moved by its duration.
	timer := c.NewTimer(time.Minute)
	base.Step(time.Minute)
	select {
	case <-timer.C():
	default:
		t.Error("timer did not fire after base moved by its duration")
	}
	// On the real clock the monotonic reading survives the offset.
	real := skewclock.New(clock.RealClock{}, 24*time.Hour)
	if d := real.Since(real.Now()); d < 0 || d > time.Minute {
		t.Errorf("real skewed clock Since(Now()) = %v", d)
	}
}

func TestNewPassive(t *testing.T) {
	base := clocktesting.NewFakePassiveClock(t0)
	if got := skewclock.NewPassive(base, 0); got != clock.PassiveClock(base) {
		t.Error("offset 0 does not return the base clock")
	}
	c := skewclock.NewPassive(base, 90*time.Second)
	start := c.Now()
	if !start.Equal(t0.Add(90 * time.Second)) {
		t.Errorf("Now = %v, want %v", start, t0.Add(90*time.Second))
	}
	base.SetTime(t0.Add(5 * time.Second))
	if d := c.Since(start); d != 5*time.Second {
		t.Errorf("Since = %v, want 5s: the offset must cancel out", d)
	}
}
