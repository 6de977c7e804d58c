package backoff

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"
)

// defaultMaxAttempts is the original design's bound for the gateway's retry loop.
const defaultMaxAttempts = 10

// defaultPolicy is built once; Standard is a valid config, so this cannot fail, and
// policies are safe to share.
var defaultPolicy Policy = mustExponential(Standard())

func mustExponential(c Config) *Exponential {
	e, err := NewExponential(c)
	if err != nil {
		panic(err)
	}
	return e
}

type retryOptions struct {
	policy      Policy
	maxAttempts int
	maxElapsed  time.Duration
	clock       clock.Clock
	notify      func(err error, attempt int, next time.Duration)
}

// Option configures Retry.
type Option func(*retryOptions)

// WithPolicy sets the policy that computes each wait. Default: NewExponential
// with Standard().
func WithPolicy(p Policy) Option {
	return func(o *retryOptions) { o.policy = p }
}

// WithMaxAttempts bounds the number of calls to op, the first one included.
// Default 10. n < 1 is a programming error: Retry returns an ErrInvalidConfig error
// without calling op.
func WithMaxAttempts(n int) Option {
	return func(o *retryOptions) { o.maxAttempts = n }
}

// WithMaxElapsedTime bounds the time from the start of the first attempt, measured
// on the Retry clock. Before each wait Retry checks whether the wait would end past
// the bound and, if so, gives up at once rather than wait and fail. 0 (the default)
// means no elapsed-time bound; negative is an error.
func WithMaxElapsedTime(d time.Duration) Option {
	return func(o *retryOptions) { o.maxElapsed = d }
}

// WithClock sets the clock that measures elapsed time and creates the wait timers.
// Default clock.RealClock{}. Tests pass a k8s.io/utils/clock/testing.FakeClock.
func WithClock(c clock.Clock) Option {
	return func(o *retryOptions) { o.clock = c }
}

// WithNotify registers f, called before each wait with the failed attempt's error,
// its number and the wait that follows. It runs on Retry's goroutine, so it should
// be quick (a metric, a log line). It is not called when Retry stops instead of
// waiting.
func WithNotify(f func(err error, attempt int, next time.Duration)) Option {
	return func(o *retryOptions) { o.notify = f }
}

func (o *retryOptions) validate() error {
	var errs []error
	if o.maxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%w: max attempts %d must be at least 1", ErrInvalidConfig, o.maxAttempts))
	}
	if o.maxElapsed < 0 {
		errs = append(errs, fmt.Errorf("%w: max elapsed time %v is negative", ErrInvalidConfig, o.maxElapsed))
	}
	if o.policy == nil {
		errs = append(errs, fmt.Errorf("%w: nil policy", ErrInvalidConfig))
	}
	if o.clock == nil {
		errs = append(errs, fmt.Errorf("%w: nil clock", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// Retry calls op until it succeeds, returns a Permanent error, the context ends, or
// a bound is hit, waiting between attempts as the policy says. After failed attempt
// k it waits Policy.Delay(k, prev); there is no wait after the last attempt.
//
// On failure the returned value is the zero T and the error is one of:
//   - for a Permanent error, the marked error itself when op returned
//     Permanent(err), or op's error unchanged when op wrapped the marker further;
//   - an *ExhaustedError (errors.Is(err, ErrExhausted)) carrying the last error,
//     when the attempt or elapsed-time bound stops the loop;
//   - an error matching ctx.Err() and context.Cause(ctx), and also the last op error
//     if there was one, when the context ends before an attempt or during a wait;
//   - an ErrInvalidConfig error for invalid options, without calling op.
//
// op receives ctx and should honour it; Retry does not interrupt a running op. If
// ctx is already done, op is never called.
func Retry[T any](ctx context.Context, op func(ctx context.Context) (T, error), opts ...Option) (T, error) {
	var zero T
	o := retryOptions{policy: defaultPolicy, maxAttempts: defaultMaxAttempts, clock: clock.RealClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return zero, err
	}

	start := o.clock.Now()
	var (
		last error
		prev time.Duration // what the policy returned last time, for Decorrelated
	)
	for attempt := 1; ; attempt++ {
		// Checked before every attempt, not only during waits: when the timer and
		// ctx.Done are both ready the select may pick the timer.
		if ctx.Err() != nil {
			return zero, contextError(ctx, attempt-1, last)
		}

		v, err := op(ctx)
		if err == nil {
			return v, nil
		}
		if p, ok := err.(*permanentError); ok {
			return zero, p.err
		}
		if _, ok := errors.AsType[*permanentError](err); ok {
			return zero, err
		}

		// The Retry-After marker is ours; callers see the error inside it.
		last = err
		wait, hinted := time.Duration(0), false
		if ra, ok := errors.AsType[*retryAfterError](err); ok {
			wait, hinted = ra.wait, true
			if ra == err {
				last = ra.err
			}
		}

		if attempt >= o.maxAttempts {
			return zero, &ExhaustedError{Attempts: attempt, Err: last}
		}
		if ctx.Err() != nil {
			return zero, contextError(ctx, attempt, last)
		}

		// The policy is consulted even when a hint overrides it, so prev always
		// means "the policy's previous delay" as the Policy contract says.
		delay := o.policy.Delay(attempt, prev)
		prev = delay
		if !hinted {
			wait = max(delay, 0)
		}

		if o.maxElapsed > 0 {
			// Written as a subtraction so that a huge wait cannot overflow.
			elapsed := max(o.clock.Since(start), 0)
			if wait > o.maxElapsed-elapsed {
				return zero, &ExhaustedError{Attempts: attempt, Err: last}
			}
		}

		if o.notify != nil {
			o.notify(last, attempt, wait)
		}
		if wait <= 0 {
			// No timer: a zero-length fake timer would only fire when a test steps
			// the clock.
			continue
		}
		t := o.clock.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return zero, contextError(ctx, attempt, last)
		}
	}
}

// contextError reports why the context ended (both ctx.Err() and its cause, when
// they differ) together with the last op error, all matchable with errors.Is.
func contextError(ctx context.Context, attempts int, last error) error {
	reason := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, reason) {
		reason = fmt.Errorf("%w: %w", reason, cause)
	}
	if last == nil {
		return fmt.Errorf("backoff: stopped before the first attempt: %w", reason)
	}
	return fmt.Errorf("backoff: stopped after %s: %w; last error: %w", countAttempts(attempts), reason, last)
}
