package backoff_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/leasehold/leasehold/backoff"
)

// FuzzExponential checks the invariants every valid config must keep for every
// attempt: delays inside [base, max] (FullJitter inside [0, max]), never negative,
// the nominal schedule never decreasing; and that a config is rejected exactly when
// one of its fields is out of range.
func FuzzExponential(f *testing.F) {
	f.Add(int64(100*ms), int64(time.Second), 2.0, 10.0, false, 0.5, 1, int64(0))
	f.Add(int64(0), int64(0), 0.0, 0.0, false, 0.999, 1<<40, int64(time.Hour))
	f.Add(int64(1), int64(math.MaxInt64), 1.5, 100.0, false, 0.0, math.MaxInt, int64(math.MaxInt64))
	f.Add(int64(50*ms), int64(500*ms), 3.0, 20.0, true, 1.0, -7, int64(-1))
	f.Add(int64(-1), int64(time.Second), 0.5, 101.0, false, math.NaN(), 3, int64(0))
	f.Add(int64(time.Second), int64(time.Second), 1.0, 0.0, false, 2.0, 0, int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, base, maxP int64, mult, jitter float64, noJitter bool, r float64, attempt int, prev int64) {
		cfg := backoff.Config{
			BasePeriod:    time.Duration(base),
			MaxPeriod:     time.Duration(maxP),
			Multiplier:    mult,
			JitterPercent: jitter,
			NoJitter:      noJitter,
			Rand:          constRand(r), // may break the [0,1) contract on purpose
		}
		e, err := backoff.NewExponential(cfg)

		effBase, effMax, effMult, effJitter := cfg.BasePeriod, cfg.MaxPeriod, mult, jitter
		if effBase == 0 {
			effBase = 30 * time.Second
		}
		if effMax == 0 {
			effMax = 5 * time.Minute
		}
		if effMult == 0 {
			effMult = 2
		}
		if effJitter == 0 {
			effJitter = 10
		}
		valid := base >= 0 && maxP >= 0 && effMax >= effBase &&
			effMult >= 1 && !math.IsInf(effMult, 0) &&
			effJitter >= 0 && effJitter <= 100 // NaN fails both comparisons
		if !valid {
			if err == nil || !errors.Is(err, backoff.ErrInvalidConfig) {
				t.Fatalf("config %+v accepted, err = %v", cfg, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid config %+v rejected: %v", cfg, err)
		}

		nominal := e.CalculateWithoutJitter(attempt)
		if nominal < effBase || nominal > effMax {
			t.Fatalf("CalculateWithoutJitter(%d) = %v outside [%v, %v]", attempt, nominal, effBase, effMax)
		}
		if attempt < math.MaxInt {
			if next := e.CalculateWithoutJitter(attempt + 1); next < nominal {
				t.Fatalf("schedule decreases: attempt %d -> %v, attempt %d -> %v", attempt, nominal, attempt+1, next)
			}
		}
		if d := e.Calculate(attempt); d < effBase || d > effMax {
			t.Fatalf("Calculate(%d) = %v outside [%v, %v]", attempt, d, effBase, effMax)
		}
		if d := e.Delay(attempt, time.Duration(prev)); d < effBase || d > effMax {
			t.Fatalf("Delay(%d) = %v outside [%v, %v]", attempt, d, effBase, effMax)
		}

		if noJitter {
			return // the random policies refuse NoJitter
		}
		fj, err := backoff.NewFullJitter(cfg)
		if err != nil {
			t.Fatalf("NewFullJitter rejected a config NewExponential accepted: %v", err)
		}
		if d := fj.Delay(attempt, time.Duration(prev)); d < 0 || d > effMax || d > nominal {
			t.Fatalf("FullJitter.Delay(%d) = %v outside [0, %v]", attempt, d, nominal)
		}
		dj, err := backoff.NewDecorrelated(cfg)
		if err != nil {
			t.Fatalf("NewDecorrelated rejected a config NewExponential accepted: %v", err)
		}
		if d := dj.Delay(attempt, time.Duration(prev)); d < effBase || d > effMax {
			t.Fatalf("Decorrelated.Delay(%d, %v) = %v outside [%v, %v]", attempt, time.Duration(prev), d, effBase, effMax)
		}
	})
}
