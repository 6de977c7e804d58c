package backoff_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/backoff"
)

const ms = time.Millisecond

func noJitter(c backoff.Config) backoff.Config {
	c.NoJitter = true
	return c
}

func mustExponential(t testing.TB, c backoff.Config) *backoff.Exponential {
	t.Helper()
	e, err := backoff.NewExponential(c)
	if err != nil {
		t.Fatalf("NewExponential(%+v): %v", c, err)
	}
	return e
}

// constRand returns a Rand that always yields r.
func constRand(r float64) func() float64 { return func() float64 { return r } }

// almostOne is the largest value a conforming Rand can return.
var almostOne = math.Nextafter(1, 0)

func TestSchedulesWithoutJitter(t *testing.T) {
	tests := []struct {
		name string
		cfg  backoff.Config
		want []time.Duration // for attempts 1, 2, ...
	}{
		{
			name: "standard doubles to the 1s cap",
			cfg:  backoff.Standard(),
			want: []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms},
		},
		{
			name: "aggressive triples to the 500ms cap",
			cfg:  backoff.Aggressive(),
			want: []time.Duration{50 * ms, 150 * ms, 450 * ms, 500 * ms, 500 * ms},
		},
		{
			name: "conservative grows by half to the 5s cap",
			cfg:  backoff.Conservative(),
			want: []time.Duration{200 * ms, 300 * ms, 450 * ms, 675 * ms, 1012500 * time.Microsecond, 1518750 * time.Microsecond, 2278125 * time.Microsecond, 3417187500 * time.Nanosecond, 5000 * ms, 5000 * ms},
		},
		{
			name: "zero config uses 30s, x2, 5m",
			cfg:  backoff.Config{},
			want: []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute},
		},
		{
			name: "multiplier 1 is constant",
			cfg:  backoff.Config{BasePeriod: 250 * ms, MaxPeriod: time.Second, Multiplier: 1},
			want: []time.Duration{250 * ms, 250 * ms, 250 * ms},
		},
		{
			name: "base equal to max",
			cfg:  backoff.Config{BasePeriod: time.Second, MaxPeriod: time.Second},
			want: []time.Duration{time.Second, time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustExponential(t, noJitter(tt.cfg))
			var prev time.Duration
			for i, want := range tt.want {
				attempt := i + 1
				if got := e.CalculateWithoutJitter(attempt); got != want {
					t.Errorf("CalculateWithoutJitter(%d) = %v, want %v", attempt, got, want)
				}
				if got := e.Calculate(attempt); got != want {
					t.Errorf("Calculate(%d) with NoJitter = %v, want %v", attempt, got, want)
				}
				if got := e.Delay(attempt, prev); got != want {
					t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
				}
				prev = want
			}
		})
	}
}

// The nominal total of the table in doc.go: 10 attempts wait 9 times.
func TestStandardScheduleTotal(t *testing.T) {
	e := mustExponential(t, noJitter(backoff.Standard()))
	var total time.Duration
	for attempt := 1; attempt <= 9; attempt++ {
		total += e.Calculate(attempt)
	}
	if total != 6500*ms {
		t.Errorf("9 waits total %v, want 6.5s", total)
	}
}

// Each preset's jitter percent, observed through the lowest and highest draws at an
// attempt where neither bound clamps.
func TestPresetJitterPercent(t *testing.T) {
	tests := []struct {
		name     string
		cfg      backoff.Config
		low, top time.Duration // attempt 2 with Rand = 0 and Rand = almostOne
	}{
		{"standard", backoff.Standard(), 180 * ms, 220 * ms},
		{"aggressive", backoff.Aggressive(), 120 * ms, 180 * ms},
		{"conservative", backoff.Conservative(), 270 * ms, 330 * ms},
		{"zero config", backoff.Config{}, 54 * time.Second, 66 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				r    float64
				want time.Duration
			}{{0, tt.low}, {almostOne, tt.top}} {
				cfg := tt.cfg
				cfg.Rand = constRand(c.r)
				if got := mustExponential(t, cfg).Calculate(2); got != c.want {
					t.Errorf("Calculate(2) with Rand=%v = %v, want %v", c.r, got, c.want)
				}
			}
		})
	}
}

func TestPresetsAreFreshValues(t *testing.T) {
	c := backoff.Standard()
	c.BasePeriod = time.Hour
	if got := backoff.Standard().BasePeriod; got != 100*ms {
		t.Errorf("Standard().BasePeriod = %v after mutating an earlier copy, want 100ms", got)
	}
}

func TestConfigValidation(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		cfg  backoff.Config
		want []string // substrings of the error; nil means valid
	}{
		{name: "zero config", cfg: backoff.Config{}},
		{name: "presets", cfg: backoff.Standard()},
		{name: "multiplier exactly 1", cfg: backoff.Config{Multiplier: 1}},
		{name: "jitter 100", cfg: backoff.Config{JitterPercent: 100}},
		{name: "base equals max", cfg: backoff.Config{BasePeriod: time.Second, MaxPeriod: time.Second}},
		{name: "max only, above default base", cfg: backoff.Config{MaxPeriod: time.Minute}},

		{name: "negative base", cfg: backoff.Config{BasePeriod: -time.Second}, want: []string{"BasePeriod -1s is negative"}},
		{name: "negative max", cfg: backoff.Config{MaxPeriod: -time.Second}, want: []string{"MaxPeriod -1s is negative"}},
		{name: "max below base", cfg: backoff.Config{BasePeriod: 2 * time.Second, MaxPeriod: time.Second}, want: []string{"MaxPeriod 1s is less than BasePeriod 2s"}},
		{name: "default max below base", cfg: backoff.Config{BasePeriod: 10 * time.Minute}, want: []string{"MaxPeriod 5m0s (default) is less than BasePeriod 10m0s"}},
		{name: "max below default base", cfg: backoff.Config{MaxPeriod: time.Second}, want: []string{"MaxPeriod 1s is less than BasePeriod 30s (default)"}},
		{name: "multiplier below 1", cfg: backoff.Config{Multiplier: 0.5}, want: []string{"Multiplier 0.5 must be a finite number >= 1"}},
		{name: "negative multiplier", cfg: backoff.Config{Multiplier: -2}, want: []string{"Multiplier -2"}},
		{name: "NaN multiplier", cfg: backoff.Config{Multiplier: nan}, want: []string{"Multiplier NaN"}},
		{name: "infinite multiplier", cfg: backoff.Config{Multiplier: inf}, want: []string{"Multiplier +Inf"}},
		{name: "negative jitter", cfg: backoff.Config{JitterPercent: -1}, want: []string{"JitterPercent -1 must be within [0, 100]"}},
		{name: "jitter above 100", cfg: backoff.Config{JitterPercent: 100.5}, want: []string{"JitterPercent 100.5"}},
		{name: "NaN jitter", cfg: backoff.Config{JitterPercent: nan}, want: []string{"JitterPercent NaN"}},
		{name: "infinite jitter", cfg: backoff.Config{JitterPercent: inf}, want: []string{"JitterPercent +Inf"}},
		{name: "bad jitter is reported even with NoJitter", cfg: backoff.Config{JitterPercent: 150, NoJitter: true}, want: []string{"JitterPercent 150"}},
		{
			name: "every problem is reported at once",
			cfg:  backoff.Config{BasePeriod: -1, MaxPeriod: -1, Multiplier: 0.1, JitterPercent: 200},
			want: []string{"BasePeriod", "MaxPeriod", "Multiplier", "JitterPercent"},
		},
	}
	constructors := []struct {
		name string
		new  func(backoff.Config) error
	}{
		{"NewExponential", func(c backoff.Config) error { _, err := backoff.NewExponential(c); return err }},
		{"NewFullJitter", func(c backoff.Config) error { _, err := backoff.NewFullJitter(c); return err }},
		{"NewDecorrelated", func(c backoff.Config) error { _, err := backoff.NewDecorrelated(c); return err }},
	}
	for _, tt := range tests {
		for _, ctor := range constructors {
			if tt.cfg.NoJitter && ctor.name != "NewExponential" {
				continue // covered by TestRandomPoliciesRefuseNoJitter
			}
			t.Run(tt.name+"/"+ctor.name, func(t *testing.T) {
				err := ctor.new(tt.cfg)
				if tt.want == nil {
					if err != nil {
						t.Fatalf("unexpected error: %v", err)
					}
					return
				}
				if !errors.Is(err, backoff.ErrInvalidConfig) {
					t.Fatalf("error %v does not match ErrInvalidConfig", err)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			})
		}
	}
}

func TestRandomPoliciesRefuseNoJitter(t *testing.T) {
	cfg := noJitter(backoff.Standard())
	if _, err := backoff.NewFullJitter(cfg); !errors.Is(err, backoff.ErrInvalidConfig) {
		t.Errorf("NewFullJitter with NoJitter: err = %v, want ErrInvalidConfig", err)
	}
	if _, err := backoff.NewDecorrelated(cfg); !errors.Is(err, backoff.ErrInvalidConfig) {
		t.Errorf("NewDecorrelated with NoJitter: err = %v, want ErrInvalidConfig", err)
	}
}

func TestAttemptBelowOneCountsAsOne(t *testing.T) {
	e := mustExponential(t, noJitter(backoff.Standard()))
	for _, attempt := range []int{0, -1, math.MinInt} {
		if got := e.Calculate(attempt); got != 100*ms {
			t.Errorf("Calculate(%d) = %v, want 100ms", attempt, got)
		}
	}
	f, err := backoff.NewFullJitter(backoff.Config{BasePeriod: 100 * ms, MaxPeriod: time.Second, Rand: constRand(almostOne)})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Delay(-5, 0); got != 100*ms {
		t.Errorf("FullJitter.Delay(-5) = %v, want the attempt-1 ceiling 100ms", got)
	}
}

func TestHugeAttemptsHitTheCap(t *testing.T) {
	configs := map[string]backoff.Config{
		"standard":           backoff.Standard(),
		"aggressive":         backoff.Aggressive(),
		"conservative":       backoff.Conservative(),
		"zero config":        {},
		"multiplier 1":       {BasePeriod: ms, MaxPeriod: time.Second, Multiplier: 1},
		"barely growing":     {BasePeriod: ms, MaxPeriod: time.Second, Multiplier: 1 + 1e-9},
		"largest cap":        {BasePeriod: 1, MaxPeriod: math.MaxInt64},
		"largest base = cap": {BasePeriod: math.MaxInt64, MaxPeriod: math.MaxInt64},
	}
	attempts := []int{62, 63, 64, 65, 1000, 1 << 40, math.MaxInt32, math.MaxInt}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			e := mustExponential(t, cfg)
			base, maxP := cfg.BasePeriod, cfg.MaxPeriod
			if base == 0 {
				base = 30 * time.Second
			}
			if maxP == 0 {
				maxP = 5 * time.Minute
			}
			for _, attempt := range attempts {
				nominal := e.CalculateWithoutJitter(attempt)
				if nominal < base || nominal > maxP {
					t.Errorf("CalculateWithoutJitter(%d) = %v, outside [%v, %v]", attempt, nominal, base, maxP)
				}
				if d := e.Calculate(attempt); d < base || d > maxP {
					t.Errorf("Calculate(%d) = %v, outside [%v, %v]", attempt, d, base, maxP)
				}
			}
			// Except for a constant schedule, attempt 1<<40 is at the cap.
			if cfg.Multiplier != 1 {
				if got := e.CalculateWithoutJitter(1 << 40); got != maxP {
					t.Errorf("CalculateWithoutJitter(1<<40) = %v, want the cap %v", got, maxP)
				}
			}
		})
	}
}
