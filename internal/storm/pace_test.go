package storm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// arrivals records, for a fake gateway, the fake clock's time since
// fakeStart at which each request arrived, and the most requests it had in
// flight at once.
type arrivals struct {
	fc *clocktesting.FakeClock

	mu          sync.Mutex
	at          []time.Duration
	inFlight    int
	maxInFlight int
}

// arrive records a request and returns the function that marks it answered.
func (a *arrivals) arrive() (done func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = append(a.at, a.fc.Since(fakeStart))
	a.inFlight++
	a.maxInFlight = max(a.maxInFlight, a.inFlight)
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.inFlight--
	}
}

func (a *arrivals) mostInFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInFlight
}

func (a *arrivals) times() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at)
}

func millis(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// await returns Run's answer. The deadline only keeps a hung Run from
// hanging the test; nothing is inferred from how long Run took.
func await(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return runResult{}
	}
}

func TestRatePacesFirstAttempts(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	arr := &arrivals{fc: fc}
	g := newFakeGateway(t, func(int, *http.Request, []byte) reply {
		arr.arrive()()
		return reply{code: http.StatusCreated, body: `{"name":"rr-1"}`}
	})
	const (
		signals  = 5
		interval = 100 * time.Millisecond // 1/Rate
	)
	done := runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: signals, Rate: 10, Clock: fc})

	// Signal 0 goes at once. Before each later signal k the storm must be
	// waiting on a timer with exactly k requests seen; a step just short of
	// the interval must leave it waiting, the rest of the step release it.
	for k := 1; k < signals; k++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("request %d and the pacing timer for signal %d", k, k), func() bool {
			return g.requests() == k && fc.HasWaiters()
		})
		fc.Step(interval - time.Millisecond)
		if !fc.HasWaiters() {
			t.Fatalf("signal %d released %v after signal %d, want %v", k, interval-time.Millisecond, k-1, interval)
		}
		if got := g.requests(); got != k {
			t.Fatalf("after %v: %d requests, want %d", time.Duration(k)*interval-time.Millisecond, got, k)
		}
		fc.Step(time.Millisecond)
	}
	r := await(t, done)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if got, want := arr.times(), millis(0, 100, 200, 300, 400); !slices.Equal(got, want) {
		t.Errorf("requests arrived at %v, want %v (signal i at i/Rate)", got, want)
	}
	rep := r.rep
	if rep.Rate != 10 || rep.Acknowledged != signals || rep.Attempts != signals || rep.DurationSeconds != 0.4 {
		t.Errorf("rate %v acknowledged %d attempts %d duration %vs, want 10, %d, %d, 0.4", rep.Rate, rep.Acknowledged, rep.Attempts, rep.DurationSeconds, signals, signals)
	}
	// The last signal waited 400ms for its turn and was answered without
	// the clock moving: the wait is not part of its latency.
	if l := rep.Results[signals-1].Latency; l != 0 {
		t.Errorf("last signal's latency = %v, want 0", l)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "concurrency 5, rate 10/s, 1 target(s)") {
		t.Errorf("text header lacks the rate:\n%s", b.String())
	}
}

// TestRateZeroIsUnpaced: without a rate every signal is in flight at once,
// as before, and Run needs no step of the clock.
func TestRateZeroIsUnpaced(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	arr := &arrivals{fc: fc}
	const signals = 5
	all := make(chan struct{})
	g := newFakeGateway(t, func(n int, _ *http.Request, _ []byte) reply {
		defer arr.arrive()()
		if n == signals {
			close(all)
		}
		// Every request is held until all have arrived, which only
		// happens if all are in flight together.
		select {
		case <-all:
			return reply{code: http.StatusCreated, body: `{"name":"rr-1"}`}
		case <-time.After(10 * time.Second):
			return reply{code: http.StatusGatewayTimeout}
		}
	})
	r := await(t, runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: signals, Clock: fc}))
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if r.rep.Acknowledged != signals || arr.mostInFlight() != signals {
		t.Errorf("acknowledged %d, at most %d in flight; want %d and %d", r.rep.Acknowledged, arr.mostInFlight(), signals, signals)
	}
	if got, want := arr.times(), millis(0, 0, 0, 0, 0); !slices.Equal(got, want) {
		t.Errorf("requests arrived at %v, want %v", got, want)
	}
	var b strings.Builder
	if err := r.rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "rate") {
		t.Errorf("text mentions a rate for an unpaced storm:\n%s", b.String())
	}
	data, err := json.Marshal(r.rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["rate"]; ok {
		t.Errorf("JSON of an unpaced storm has a rate: %v", m["rate"])
	}
}

// TestRateKeepsConcurrencyAndCatchesUp: pacing does not lift the bound on
// signals in flight, and the schedule is absolute: signals held back by
// the bound start as soon as a worker is free, without new waits.
func TestRateKeepsConcurrencyAndCatchesUp(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	arr := &arrivals{fc: fc}
	release := make(chan struct{})
	g := newFakeGateway(t, func(n int, _ *http.Request, _ []byte) reply {
		defer arr.arrive()()
		if n == 1 {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
				return reply{code: http.StatusGatewayTimeout}
			}
		}
		return reply{code: http.StatusCreated, body: `{"name":"rr-1"}`}
	})
	done := runAsync(testContext(t), Config{Targets: []string{g.URL()}, Signals: 3, Concurrency: 1, Rate: 10, Clock: fc})
	waitFor(t, 10*time.Second, "request 1 and the pacing timer for signal 1", func() bool {
		return g.requests() == 1 && fc.HasWaiters()
	})
	// Signals 1 (due at 100ms) and 2 (due at 200ms) are both due now, but
	// the only worker is busy with signal 0.
	fc.Step(250 * time.Millisecond)
	close(release)
	r := await(t, done)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if got, want := arr.times(), millis(0, 250, 250); !slices.Equal(got, want) {
		t.Errorf("requests arrived at %v, want %v", got, want)
	}
	if arr.mostInFlight() != 1 || r.rep.Acknowledged != 3 {
		t.Errorf("at most %d in flight, acknowledged %d; want 1 and 3", arr.mostInFlight(), r.rep.Acknowledged)
	}
}

// lineCounter counts the lines of a plain progress display, which, for a
// storm of fewer than ten signals, writes one as each signal finishes.
type lineCounter struct {
	mu    sync.Mutex
	lines int
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines += strings.Count(string(p), "\n")
	return len(p), nil
}

func (w *lineCounter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

func TestCancelDuringPacing(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	g := newFakeGateway(t, nil)
	ctx, cancel := context.WithCancel(testContext(t))
	const signals = 5
	// The gateway counting signal 0 is not enough: its answer must have
	// reached the storm before the cancel, or signal 0 is canceled too.
	finished := &lineCounter{}
	done := runAsync(ctx, Config{Targets: []string{g.URL()}, Signals: signals, Rate: 1, Clock: fc, Progress: finished})
	waitFor(t, 10*time.Second, "signal 0 finished and the pacing timer for signal 1", func() bool {
		return finished.count() == 1 && fc.HasWaiters()
	})
	cancel()
	// Without a step of the clock: the schedule must not hold Run up.
	r := await(t, done)
	if !errors.Is(r.err, context.Canceled) || r.rep == nil {
		t.Fatalf("Run = %v, %v; want a partial report and context.Canceled", r.rep, r.err)
	}
	if res := r.rep.Results[0]; res.Outcome != "201" || res.Attempts != 1 {
		t.Errorf("signal 0 = %+v, want 201 after 1 attempt", res)
	}
	for _, res := range r.rep.Results[1:] {
		if res.Outcome != OutcomeCanceled || res.Attempts != 0 || res.Code != 0 {
			t.Errorf("signal %d = %+v, want canceled without an attempt", res.Index, res)
		}
	}
	if g.requests() != 1 || r.rep.Outcomes[OutcomeCanceled] != signals-1 || r.rep.Failed != signals-1 {
		t.Errorf("gateway saw %d requests, outcomes %v, failed %d; want 1, %d canceled, %d failed",
			g.requests(), r.rep.Outcomes, r.rep.Failed, signals-1, signals-1)
	}
	if fc.HasWaiters() {
		t.Error("a pacing timer is left registered after Run returned")
	}
}

func TestRateValidation(t *testing.T) {
	for _, rate := range []float64{-1, -0.001, math.NaN(), math.Inf(1), math.Inf(-1)} {
		rep, err := Run(testContext(t), Config{Targets: []string{"http://127.0.0.1:1"}, Rate: rate})
		if !errors.Is(err, ErrInvalidConfig) || rep != nil {
			t.Errorf("rate %v: Run = %v, %v; want no report and ErrInvalidConfig", rate, rep, err)
			continue
		}
		if !strings.Contains(err.Error(), "rate") {
			t.Errorf("rate %v: error %q does not name the rate", rate, err)
		}
	}
	for _, rate := range []float64{0, 0.5, 40, 1e9} {
		c, err := Config{Targets: []string{"http://127.0.0.1:1"}, Rate: rate}.resolve()
		if err != nil || c.Rate != rate {
			t.Errorf("rate %v: resolved to %v, %v; want it kept", rate, c.Rate, err)
		}
	}
}

func TestPaceOffset(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		i    int
		want time.Duration
	}{
		{10, 0, 0},
		{10, 3, 300 * time.Millisecond},
		{40, 600, 15 * time.Second},
		{0.5, 3, 6 * time.Second},
		// 1/3 s rounded up: never a nanosecond early.
		{3, 1, 333333334 * time.Nanosecond},
		{3, 3, time.Second},
		// A schedule longer than a Duration saturates instead of wrapping
		// into the past.
		{1e-300, 1, math.MaxInt64},
	} {
		if got := (pacer{rate: tc.rate}).offset(tc.i); got != tc.want {
			t.Errorf("offset(rate %v, signal %d) = %v, want %v", tc.rate, tc.i, got, tc.want)
		}
	}
}
