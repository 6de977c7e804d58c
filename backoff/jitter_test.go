package backoff_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/backoff"
)

const samples = 10000

// spread tracks the smallest, largest and mean of a set of delays.
type spread struct {
	n        int
	min, max time.Duration
	sum      float64
}

func (s *spread) add(d time.Duration) {
	if s.n == 0 || d < s.min {
		s.min = d
	}
	if s.n == 0 || d > s.max {
		s.max = d
	}
	s.n++
	s.sum += float64(d)
}

func (s *spread) mean() time.Duration { return time.Duration(s.sum / float64(s.n)) }

// These use the default random source: the bounds must hold for every draw, and
// with 10,000 uniform draws the chance of missing the outer 10% of a band is about
// 0.9^10000, so the coverage checks cannot flake in practice.
func TestExponentialJitterBounds(t *testing.T) {
	e := mustExponential(t, backoff.Standard())
	for attempt := 1; attempt <= 6; attempt++ {
		nominal := e.CalculateWithoutJitter(attempt)
		lo := max(time.Duration(float64(nominal)*0.9), 100*ms)
		hi := min(time.Duration(float64(nominal)*1.1), time.Second)
		var s spread
		for range samples {
			d := e.Calculate(attempt)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: Calculate = %v, outside ±10%% of %v clamped into [100ms, 1s] = [%v, %v]", attempt, d, nominal, lo, hi)
			}
			s.add(d)
		}
		t.Logf("Exponential attempt %d: nominal %v, allowed [%v, %v], observed [%v, %v] (%+.2f%% .. %+.2f%%), mean %v",
			attempt, nominal, lo, hi, s.min, s.max, pct(s.min, nominal), pct(s.max, nominal), s.mean())
		// The draws must actually spread over the band, not sit at the nominal value.
		if width := hi - lo; s.max-s.min < width*9/10 {
			t.Errorf("attempt %d: observed spread %v covers less than 90%% of the allowed %v", attempt, s.max-s.min, width)
		}
	}
}

func pct(d, nominal time.Duration) float64 {
	return 100 * (float64(d) - float64(nominal)) / float64(nominal)
}

func TestFullJitterBounds(t *testing.T) {
	f, err := backoff.NewFullJitter(backoff.Standard())
	if err != nil {
		t.Fatal(err)
	}
	for _, attempt := range []int{1, 3, 5, 10} {
		ceiling := min(100*ms<<(attempt-1), time.Second)
		var s spread
		for range samples {
			d := f.Delay(attempt, 0)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: Delay = %v, outside [0, %v]", attempt, d, ceiling)
			}
			s.add(d)
		}
		t.Logf("FullJitter attempt %d: allowed [0, %v], observed [%v, %v], mean %v", attempt, ceiling, s.min, s.max, s.mean())
		if s.min > ceiling/20 || s.max < ceiling*19/20 {
			t.Errorf("attempt %d: observed [%v, %v] does not cover [0, %v]", attempt, s.min, s.max, ceiling)
		}
		// Uniform on [0, c] has mean c/2; the standard error over 10,000 draws is
		// about 0.3% of c, so 5% is far outside chance.
		if m := s.mean(); m < ceiling*45/100 || m > ceiling*55/100 {
			t.Errorf("attempt %d: mean %v, want about %v", attempt, m, ceiling/2)
		}
	}
}

func TestDecorrelatedBounds(t *testing.T) {
	d, err := backoff.NewDecorrelated(backoff.Standard())
	if err != nil {
		t.Fatal(err)
	}
	var all spread
	atCap := 0
	// Chains of 10 delays, each fed the previous one, as Retry does.
	for range samples / 10 {
		var prev time.Duration
		for attempt := 1; attempt <= 10; attempt++ {
			got := d.Delay(attempt, prev)
			ceiling := min(max(100*ms, 3*prev), time.Second)
			if got < 100*ms || got > ceiling {
				t.Fatalf("attempt %d after %v: Delay = %v, outside [100ms, %v]", attempt, prev, got, ceiling)
			}
			if attempt == 1 && got != 100*ms {
				t.Fatalf("first delay = %v, want the base 100ms", got)
			}
			if got == time.Second {
				atCap++
			}
			all.add(got)
			prev = got
		}
	}
	t.Logf("Decorrelated over %d delays: allowed [100ms, 1s], observed [%v, %v], mean %v, %d at the cap", all.n, all.min, all.max, all.mean(), atCap)
	if all.max < 950*ms {
		t.Errorf("observed max %v: delays never approached the 1s cap", all.max)
	}
}

func TestDeterministicRand(t *testing.T) {
	type policyCase struct {
		name string
		new  func(backoff.Config) (backoff.Policy, error)
		low  []time.Duration // Rand = 0
		top  []time.Duration // Rand = almostOne
	}
	cases := []policyCase{
		{
			name: "Exponential",
			new:  func(c backoff.Config) (backoff.Policy, error) { return backoff.NewExponential(c) },
			// -10% clamps to the base at attempt 1; +10% clamps to the cap from attempt 5.
			low: []time.Duration{100 * ms, 180 * ms, 360 * ms, 720 * ms, 900 * ms, 900 * ms},
			top: []time.Duration{110 * ms, 220 * ms, 440 * ms, 880 * ms, 1000 * ms, 1000 * ms},
		},
		{
			name: "FullJitter",
			new:  func(c backoff.Config) (backoff.Policy, error) { return backoff.NewFullJitter(c) },
			low:  []time.Duration{0, 0, 0, 0, 0, 0},
			top:  []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms},
		},
		{
			name: "Decorrelated",
			new:  func(c backoff.Config) (backoff.Policy, error) { return backoff.NewDecorrelated(c) },
			low:  []time.Duration{100 * ms, 100 * ms, 100 * ms, 100 * ms, 100 * ms, 100 * ms},
			top:  []time.Duration{100 * ms, 300 * ms, 900 * ms, 1000 * ms, 1000 * ms, 1000 * ms},
		},
	}
	for _, pc := range cases {
		for _, rc := range []struct {
			r    float64
			want []time.Duration
		}{{0, pc.low}, {almostOne, pc.top}} {
			cfg := backoff.Standard()
			cfg.Rand = constRand(rc.r)
			p, err := pc.new(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var prev time.Duration
			for i, want := range rc.want {
				got := p.Delay(i+1, prev)
				if got != want {
					t.Errorf("%s with Rand=%v: Delay(%d, %v) = %v, want %v", pc.name, rc.r, i+1, prev, got, want)
				}
				prev = got
			}
		}
	}
}

// A Rand that breaks its contract must not push a delay outside its bounds.
func TestOutOfRangeRandIsClamped(t *testing.T) {
	for _, r := range []float64{-1, 1, 2, math.NaN(), math.Inf(1), math.Inf(-1)} {
		cfg := backoff.Standard()
		cfg.Rand = constRand(r)
		e := mustExponential(t, cfg)
		f, _ := backoff.NewFullJitter(cfg)
		d, _ := backoff.NewDecorrelated(cfg)
		for attempt := 1; attempt <= 6; attempt++ {
			if got := e.Calculate(attempt); got < 100*ms || got > time.Second {
				t.Errorf("Rand=%v: Exponential.Calculate(%d) = %v", r, attempt, got)
			}
			if got := f.Delay(attempt, 0); got < 0 || got > time.Second {
				t.Errorf("Rand=%v: FullJitter.Delay(%d) = %v", r, attempt, got)
			}
			if got := d.Delay(attempt, time.Second); got < 100*ms || got > time.Second {
				t.Errorf("Rand=%v: Decorrelated.Delay(%d) = %v", r, attempt, got)
			}
		}
	}
}

func TestDecorrelatedExtremePrev(t *testing.T) {
	cfg := backoff.Standard()
	cfg.Rand = constRand(almostOne)
	d, err := backoff.NewDecorrelated(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, prev := range []time.Duration{-time.Hour, math.MinInt64, math.MaxInt64, math.MaxInt64 / 3} {
		got := d.Delay(2, prev)
		want := time.Second
		if prev < 0 {
			want = 100 * ms
		}
		if got != want {
			t.Errorf("Delay(2, %d) = %v, want %v", prev, got, want)
		}
	}
}

// Run with -race: one policy value is shared by every goroutine, as Retry's
// default policy is.
func TestPoliciesAreSafeForConcurrentUse(t *testing.T) {
	e := mustExponential(t, backoff.Standard())
	f, _ := backoff.NewFullJitter(backoff.Standard())
	d, _ := backoff.NewDecorrelated(backoff.Standard())
	policies := []backoff.Policy{e, f, d}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for attempt := 1; attempt <= 500; attempt++ {
				for _, p := range policies {
					if got := p.Delay(attempt%12+1, 300*ms); got < 0 || got > time.Second {
						t.Errorf("Delay = %v outside [0, 1s]", got)
					}
				}
			}
		})
	}
	wg.Wait()
}
