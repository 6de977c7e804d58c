package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
	testclock "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/backoff"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// observedClock is a fake clock that reports every timer Retry creates, after the
// timer is registered. The test goroutine advances time only on that signal, so no
// test polls or sleeps and every step lands on a waiting timer.
type observedClock struct {
	*testclock.FakeClock
	timers chan time.Duration
}

func newObservedClock() *observedClock {
	return &observedClock{FakeClock: testclock.NewFakeClock(epoch), timers: make(chan time.Duration, 64)}
}

func (c *observedClock) NewTimer(d time.Duration) clock.Timer {
	t := c.FakeClock.NewTimer(d)
	c.timers <- d
	return t
}

type outcome[T any] struct {
	v   T
	err error
}

// startRetry runs Retry on its own goroutine with clk injected.
func startRetry[T any](ctx context.Context, clk clock.Clock, op func(context.Context) (T, error), opts ...backoff.Option) <-chan outcome[T] {
	done := make(chan outcome[T], 1)
	opts = append(opts, backoff.WithClock(clk))
	go func() {
		v, err := backoff.Retry(ctx, op, opts...)
		done <- outcome[T]{v, err}
	}()
	return done
}

// deadlockGuard bounds how long a test waits for Retry's goroutine. It proves
// nothing about timing; it turns a hang into a failure.
const deadlockGuard = 10 * time.Second

// runRetry runs Retry to completion on a fresh observed clock, firing each timer as
// soon as it is waited on, and returns Retry's result and the waits it asked for.
func runRetry[T any](t *testing.T, ctx context.Context, op func(context.Context) (T, error), opts ...backoff.Option) (T, error, []time.Duration) {
	t.Helper()
	return runRetryOn(t, newObservedClock(), ctx, op, opts...)
}

func runRetryOn[T any](t *testing.T, clk *observedClock, ctx context.Context, op func(context.Context) (T, error), opts ...backoff.Option) (T, error, []time.Duration) {
	t.Helper()
	done := startRetry(ctx, clk, op, opts...)
	guard := time.NewTimer(deadlockGuard)
	defer guard.Stop()
	var waits []time.Duration
	for {
		select {
		case d := <-clk.timers:
			waits = append(waits, d)
			clk.Step(d)
		case r := <-done:
			if n := clk.Waiters(); n != 0 {
				t.Errorf("Retry returned with %d timers still registered", n)
			}
			return r.v, r.err, waits
		case <-guard.C:
			t.Fatal("Retry did not return")
		}
	}
}

// failing returns an op that fails with errs[i] on call i (the last one repeating)
// and counts its calls.
func failing(calls *int, errs ...error) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		err := errs[min(*calls, len(errs)-1)]
		*calls++
		if err == nil {
			return "ok", nil
		}
		return "", err
	}
}

type notified struct {
	err     error
	attempt int
	next    time.Duration
}

func recordNotify(into *[]notified) backoff.Option {
	return backoff.WithNotify(func(err error, attempt int, next time.Duration) {
		*into = append(*into, notified{err, attempt, next})
	})
}

func standardNoJitter(t *testing.T) backoff.Option {
	return backoff.WithPolicy(mustExponential(t, noJitter(backoff.Standard())))
}

var errConflict = errors.New("conflict")

func TestRetrySucceedsFirstTimeWithoutWaiting(t *testing.T) {
	calls := 0
	var notes []notified
	v, err, waits := runRetry(t, t.Context(), failing(&calls, nil), recordNotify(&notes))
	if err != nil || v != "ok" {
		t.Fatalf("Retry = %q, %v; want ok, nil", v, err)
	}
	if calls != 1 || len(waits) != 0 || len(notes) != 0 {
		t.Errorf("calls=%d waits=%v notifications=%d; want 1 call, no waits, no notifications", calls, waits, len(notes))
	}
}

func TestRetrySucceedsAfterFailures(t *testing.T) {
	calls := 0
	v, err, waits := runRetry(t, t.Context(), failing(&calls, errConflict, errConflict, nil), standardNoJitter(t))
	if err != nil || v != "ok" {
		t.Fatalf("Retry = %q, %v; want ok, nil", v, err)
	}
	if want := []time.Duration{100 * ms, 200 * ms}; calls != 3 || !slices.Equal(waits, want) {
		t.Errorf("calls=%d waits=%v; want 3 calls and waits %v (three attempts wait 300ms)", calls, waits, want)
	}
}

func TestRetryExhaustsAttemptsWithTheNoJitterSchedule(t *testing.T) {
	tests := []struct {
		attempts int
		want     []time.Duration
	}{
		{1, nil},
		{2, []time.Duration{100 * ms}},
		{4, []time.Duration{100 * ms, 200 * ms, 400 * ms}},
		{10, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d attempts", tt.attempts), func(t *testing.T) {
			calls := 0
			var notes []notified
			opts := []backoff.Option{standardNoJitter(t), recordNotify(&notes)}
			if tt.attempts != 10 {
				opts = append(opts, backoff.WithMaxAttempts(tt.attempts)) // 10 is the default
			}
			last := errors.New("still held")
			_, err, waits := runRetry(t, t.Context(), failing(&calls, errConflict, last), opts...)

			var ex *backoff.ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("err = %v, want *ExhaustedError", err)
			}
			wantLast := last
			if tt.attempts == 1 {
				wantLast = errConflict
			}
			if ex.Attempts != tt.attempts || ex.Err != wantLast {
				t.Errorf("ExhaustedError{Attempts: %d, Err: %v}, want {%d, %v}", ex.Attempts, ex.Err, tt.attempts, wantLast)
			}
			if !errors.Is(err, backoff.ErrExhausted) || !errors.Is(err, wantLast) {
				t.Errorf("err %v must match ErrExhausted and the last error", err)
			}
			if want := fmt.Sprintf("after %d attempt", tt.attempts); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), wantLast.Error()) {
				t.Errorf("message %q must name the attempt count and the last error", err)
			}
			if calls != tt.attempts {
				t.Errorf("op called %d times, want %d", calls, tt.attempts)
			}
			if !slices.Equal(waits, tt.want) {
				t.Errorf("timers %v, want %v", waits, tt.want)
			}
			if len(notes) != len(tt.want) {
				t.Fatalf("%d notifications, want %d", len(notes), len(tt.want))
			}
			var total time.Duration
			for i, n := range notes {
				if n.attempt != i+1 || n.next != tt.want[i] || n.err == nil {
					t.Errorf("notification %d = %+v, want attempt %d, next %v", i, n, i+1, tt.want[i])
				}
				total += n.next
			}
			if tt.attempts == 10 && total != 6500*ms {
				t.Errorf("10 attempts waited %v, want 6.5s", total)
			}
		})
	}
}

func TestRetryPermanentStopsAtOnce(t *testing.T) {
	inner := fmt.Errorf("forbidden: %w", errDenied)
	t.Run("returned as is", func(t *testing.T) {
		calls := 0
		_, err, waits := runRetry(t, t.Context(), failing(&calls, backoff.Permanent(inner)))
		if err != inner {
			t.Errorf("err = %#v, want the inner error itself", err)
		}
		if calls != 1 || len(waits) != 0 {
			t.Errorf("calls=%d waits=%v, want 1 call and no wait", calls, waits)
		}
		if !errors.Is(err, errDenied) || errors.Is(err, backoff.ErrExhausted) {
			t.Errorf("err %v: must match the inner chain and not ErrExhausted", err)
		}
	})
	t.Run("wrapped by op", func(t *testing.T) {
		calls := 0
		wrapped := fmt.Errorf("create lease: %w", backoff.Permanent(inner))
		_, err, _ := runRetry(t, t.Context(), failing(&calls, wrapped))
		if err != wrapped || calls != 1 {
			t.Errorf("err=%v calls=%d, want op's error after 1 call", err, calls)
		}
		if err.Error() != "create lease: forbidden: denied" {
			t.Errorf("the marker changed the message: %q", err)
		}
	})
	t.Run("after retries", func(t *testing.T) {
		calls := 0
		_, err, waits := runRetry(t, t.Context(), failing(&calls, errConflict, backoff.Permanent(inner)), standardNoJitter(t))
		if err != inner || calls != 2 || !slices.Equal(waits, []time.Duration{100 * ms}) {
			t.Errorf("err=%v calls=%d waits=%v", err, calls, waits)
		}
	})
	t.Run("Permanent(nil) is success", func(t *testing.T) {
		if backoff.Permanent(nil) != nil {
			t.Error("Permanent(nil) != nil")
		}
	})
}

var errDenied = errors.New("denied")

func TestRetryAfterOverridesTheNextWait(t *testing.T) {
	calls := 0
	busy := errors.New("429 too many requests")
	var notes []notified
	op := failing(&calls, errConflict, backoff.RetryAfter(7*time.Second, busy), errConflict, nil)
	v, err, waits := runRetry(t, t.Context(), op, standardNoJitter(t), recordNotify(&notes))
	if err != nil || v != "ok" {
		t.Fatalf("Retry = %q, %v", v, err)
	}
	// The hint replaces only its own wait, is not capped at MaxPeriod, and the
	// policy's schedule continues underneath it.
	if want := []time.Duration{100 * ms, 7 * time.Second, 400 * ms}; !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	if notes[1].err != busy {
		t.Errorf("notify got %#v, want the error inside the Retry-After marker", notes[1].err)
	}
}

func TestRetryAfterDetails(t *testing.T) {
	t.Run("last error is unwrapped", func(t *testing.T) {
		calls := 0
		busy := errors.New("busy")
		_, err, waits := runRetry(t, t.Context(), failing(&calls, backoff.RetryAfter(time.Second, busy)), backoff.WithMaxAttempts(2))
		var ex *backoff.ExhaustedError
		if !errors.As(err, &ex) || ex.Err != busy {
			t.Fatalf("err = %v, want *ExhaustedError carrying %v", err, busy)
		}
		if !slices.Equal(waits, []time.Duration{time.Second}) {
			t.Errorf("waits %v, want [1s]", waits)
		}
	})
	t.Run("zero and negative waits retry at once", func(t *testing.T) {
		calls := 0
		op := failing(&calls, backoff.RetryAfter(0, errConflict), backoff.RetryAfter(-time.Second, errConflict), nil)
		if _, err, waits := runRetry(t, t.Context(), op); err != nil || len(waits) != 0 || calls != 3 {
			t.Errorf("err=%v waits=%v calls=%d, want success after 3 calls with no timers", err, waits, calls)
		}
	})
	t.Run("nil error still fails the attempt", func(t *testing.T) {
		err := backoff.RetryAfter(2*time.Second, nil)
		if err == nil || !strings.Contains(err.Error(), "2s") {
			t.Errorf("RetryAfter(2s, nil) = %v, want an error naming the wait", err)
		}
	})
	t.Run("still subject to the elapsed bound", func(t *testing.T) {
		calls := 0
		_, err, waits := runRetry(t, t.Context(), failing(&calls, backoff.RetryAfter(time.Minute, errConflict)), backoff.WithMaxElapsedTime(30*time.Second))
		if !errors.Is(err, backoff.ErrExhausted) || calls != 1 || len(waits) != 0 {
			t.Errorf("err=%v calls=%d waits=%v, want exhaustion after 1 call without waiting", err, calls, waits)
		}
	})
}

func TestRetryMaxElapsedTimeStopsBeforeOverrunningWait(t *testing.T) {
	tests := []struct {
		name      string
		bound     time.Duration
		opTime    time.Duration // fake time each call takes
		wantCalls int
		wantWaits []time.Duration
	}{
		// 100+200+400 = 700ms waited; the next wait (800ms) would end at 1.5s.
		{name: "waits only", bound: time.Second, wantCalls: 4, wantWaits: []time.Duration{100 * ms, 200 * ms, 400 * ms}},
		// A wait that ends exactly at the bound is allowed.
		{name: "ending exactly at the bound", bound: 700 * ms, wantCalls: 4, wantWaits: []time.Duration{100 * ms, 200 * ms, 400 * ms}},
		// Attempt time counts: after 3 calls of 100ms and waits of 300ms, 600ms have
		// passed and the 400ms wait would end at 1s.
		{name: "op time counts", bound: 999 * ms, opTime: 100 * ms, wantCalls: 3, wantWaits: []time.Duration{100 * ms, 200 * ms}},
		{name: "first wait already too long", bound: 50 * ms, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newObservedClock()
			calls := 0
			op := func(context.Context) (string, error) {
				calls++
				clk.Step(tt.opTime) // the op runs on Retry's goroutine, between waits
				return "", errConflict
			}
			_, err, waits := runRetryOn(t, clk, t.Context(), op, standardNoJitter(t), backoff.WithMaxElapsedTime(tt.bound))
			var ex *backoff.ExhaustedError
			if !errors.As(err, &ex) || ex.Attempts != tt.wantCalls || ex.Err != errConflict {
				t.Errorf("err = %v, want *ExhaustedError after %d attempts carrying %v", err, tt.wantCalls, errConflict)
			}
			if calls != tt.wantCalls || !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("calls=%d waits=%v, want %d calls and waits %v", calls, waits, tt.wantCalls, tt.wantWaits)
			}
			if elapsed := clk.Since(epoch); elapsed > tt.bound {
				t.Errorf("%v elapsed, more than the bound %v", elapsed, tt.bound)
			}
		})
	}
}

func TestRetryContextCancelledMidWait(t *testing.T) {
	cause := errors.New("request timed out upstream")
	tests := []struct {
		name   string
		cancel func(context.CancelCauseFunc)
		want   []error
	}{
		{"cancel", func(c context.CancelCauseFunc) { c(nil) }, []error{context.Canceled, errConflict}},
		{"cancel with cause", func(c context.CancelCauseFunc) { c(cause) }, []error{context.Canceled, cause, errConflict}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			clk := newObservedClock()
			calls := 0
			done := startRetry(ctx, clk, failing(&calls, errConflict), standardNoJitter(t))

			guard := time.NewTimer(deadlockGuard)
			defer guard.Stop()
			first := receive(t, clk.timers, guard.C)
			clk.Step(first)
			second := receive(t, clk.timers, guard.C) // Retry is now waiting 200ms
			tt.cancel(cancel)

			var r outcome[string]
			select {
			case r = <-done:
			case <-guard.C:
				t.Fatal("Retry did not return after cancellation")
			}
			// The fake clock never reached the end of the second wait, so Retry
			// returned on the cancellation, not on the timer.
			if elapsed := clk.Since(epoch); elapsed != first || second != 200*ms {
				t.Errorf("clock advanced %v (second wait %v); Retry must not wait out the timer", elapsed, second)
			}
			if n := clk.Waiters(); n != 0 {
				t.Errorf("%d timers left registered; the wait timer must be stopped", n)
			}
			for _, w := range tt.want {
				if !errors.Is(r.err, w) {
					t.Errorf("err %q does not match %v", r.err, w)
				}
			}
			if errors.Is(r.err, backoff.ErrExhausted) {
				t.Errorf("err %v must not match ErrExhausted", r.err)
			}
			if calls != 2 || !strings.Contains(r.err.Error(), "after 2 attempts") {
				t.Errorf("calls=%d err=%q, want 2 calls named in the error", calls, r.err)
			}
		})
	}
}

func receive(t *testing.T, c <-chan time.Duration, guard <-chan time.Time) time.Duration {
	t.Helper()
	select {
	case d := <-c:
		return d
	case <-guard:
		t.Fatal("Retry never started a wait")
		return 0
	}
}

func TestRetryContextCancelledByOp(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	op := func(context.Context) (string, error) {
		calls++
		cancel()
		return "", errConflict
	}
	_, err, waits := runRetry(t, ctx, op)
	if calls != 1 || len(waits) != 0 || !errors.Is(err, context.Canceled) || !errors.Is(err, errConflict) {
		t.Errorf("calls=%d waits=%v err=%v, want one call, no wait, an error matching both", calls, waits, err)
	}
}

func TestRetryContextDoneBeforeStart(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Unix(0, 0))
	defer cancel2()
	for name, tc := range map[string]struct {
		ctx  context.Context
		want error
	}{
		"cancelled": {cancelled, context.Canceled},
		"expired":   {expired, context.DeadlineExceeded},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			_, err, _ := runRetry(t, tc.ctx, failing(&calls, nil))
			if calls != 0 {
				t.Errorf("op called %d times, want 0", calls)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRetryInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  backoff.Option
		want string
	}{
		{"zero attempts", backoff.WithMaxAttempts(0), "max attempts 0"},
		{"negative attempts", backoff.WithMaxAttempts(-3), "max attempts -3"},
		{"negative elapsed bound", backoff.WithMaxElapsedTime(-time.Second), "max elapsed time -1s"},
		{"nil policy", backoff.WithPolicy(nil), "nil policy"},
		{"nil clock", backoff.WithClock(nil), "nil clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			// Called directly: an invalid option must fail before any clock is used.
			_, err := backoff.Retry(t.Context(), failing(&calls, nil), tt.opt)
			if !errors.Is(err, backoff.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
			if calls != 0 {
				t.Errorf("op called %d times, want 0", calls)
			}
		})
	}
}

// Retry tells Decorrelated what it returned last time; with Rand near 1 each wait is
// three times the previous one.
func TestRetryFeedsPrevToThePolicy(t *testing.T) {
	cfg := backoff.Config{BasePeriod: 10 * ms, MaxPeriod: time.Second, Rand: constRand(almostOne)}
	d, err := backoff.NewDecorrelated(cfg)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, err, waits := runRetry(t, t.Context(), failing(&calls, errConflict), backoff.WithPolicy(d), backoff.WithMaxAttempts(6))
	if !errors.Is(err, backoff.ErrExhausted) {
		t.Fatalf("err = %v", err)
	}
	if want := []time.Duration{10 * ms, 30 * ms, 90 * ms, 270 * ms, 810 * ms}; !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
}

// A policy returning a negative delay must not make Retry wait or misbehave.
func TestRetryNegativePolicyDelay(t *testing.T) {
	calls := 0
	var notes []notified
	_, err, waits := runRetry(t, t.Context(), failing(&calls, errConflict), backoff.WithPolicy(negativePolicy{}), backoff.WithMaxAttempts(3), recordNotify(&notes))
	if !errors.Is(err, backoff.ErrExhausted) || calls != 3 || len(waits) != 0 {
		t.Errorf("err=%v calls=%d waits=%v", err, calls, waits)
	}
	for _, n := range notes {
		if n.next != 0 {
			t.Errorf("notified wait %v, want 0", n.next)
		}
	}
}

type negativePolicy struct{}

func (negativePolicy) Delay(int, time.Duration) time.Duration { return -time.Second }
