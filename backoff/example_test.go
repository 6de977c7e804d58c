package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leasehold/leasehold/backoff"
)

// The Standard preset without jitter: ten attempts wait nine times, 6.5s in total.
func ExampleNewExponential() {
	cfg := backoff.Standard()
	cfg.NoJitter = true
	policy, err := backoff.NewExponential(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	var total time.Duration
	for attempt := 1; attempt < 10; attempt++ {
		wait := policy.CalculateWithoutJitter(attempt)
		total += wait
		fmt.Printf("attempt %d fails: wait %v (total %v)\n", attempt, wait, total)
	}
	fmt.Println("attempt 10 fails: give up")
	// Output:
	// attempt 1 fails: wait 100ms (total 100ms)
	// attempt 2 fails: wait 200ms (total 300ms)
	// attempt 3 fails: wait 400ms (total 700ms)
	// attempt 4 fails: wait 800ms (total 1.5s)
	// attempt 5 fails: wait 1s (total 2.5s)
	// attempt 6 fails: wait 1s (total 3.5s)
	// attempt 7 fails: wait 1s (total 4.5s)
	// attempt 8 fails: wait 1s (total 5.5s)
	// attempt 9 fails: wait 1s (total 6.5s)
	// attempt 10 fails: give up
}

func ExampleNewExponential_invalid() {
	_, err := backoff.NewExponential(backoff.Config{BasePeriod: time.Second, MaxPeriod: 500 * time.Millisecond})
	fmt.Println(errors.Is(err, backoff.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// backoff: invalid config: MaxPeriod 500ms is less than BasePeriod 1s
}

func ExampleRetry() {
	// Millisecond waits keep the example fast; NoJitter keeps its output stable.
	policy, err := backoff.NewExponential(backoff.Config{BasePeriod: time.Millisecond, MaxPeriod: 4 * time.Millisecond, NoJitter: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	calls := 0
	name, err := backoff.Retry(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		if calls < 3 {
			return "", errors.New("lease held by another replica")
		}
		return "rr-7f3a", nil
	},
		backoff.WithPolicy(policy),
		backoff.WithNotify(func(err error, attempt int, next time.Duration) {
			fmt.Printf("attempt %d: %v; retrying in %v\n", attempt, err, next)
		}),
	)
	fmt.Println(name, err)
	// Output:
	// attempt 1: lease held by another replica; retrying in 1ms
	// attempt 2: lease held by another replica; retrying in 2ms
	// rr-7f3a <nil>
}

func ExampleRetry_exhausted() {
	policy, _ := backoff.NewExponential(backoff.Config{BasePeriod: time.Millisecond, MaxPeriod: time.Millisecond, NoJitter: true})
	_, err := backoff.Retry(context.Background(), func(ctx context.Context) (int, error) {
		return 0, errors.New("conflict")
	}, backoff.WithPolicy(policy), backoff.WithMaxAttempts(3))

	var ex *backoff.ExhaustedError
	if errors.As(err, &ex) {
		fmt.Println(ex.Attempts, ex.Err)
	}
	fmt.Println(err)
	// Output:
	// 3 conflict
	// backoff: gave up after 3 attempts: conflict
}

func ExamplePermanent() {
	errForbidden := errors.New("leases is forbidden")
	calls := 0
	_, err := backoff.Retry(context.Background(), func(ctx context.Context) (struct{}, error) {
		calls++
		// Retrying cannot fix a permission error.
		return struct{}{}, backoff.Permanent(errForbidden)
	})
	fmt.Println(calls, err, errors.Is(err, errForbidden))
	// Output:
	// 1 leases is forbidden true
}

func ExampleRetryAfter() {
	calls := 0
	_, err := backoff.Retry(context.Background(), func(ctx context.Context) (bool, error) {
		calls++
		if calls == 1 {
			// As an HTTP client would on a 429 with "Retry-After: 0".
			return false, backoff.RetryAfter(0, errors.New("429 too many requests"))
		}
		return true, nil
	}, backoff.WithNotify(func(err error, attempt int, next time.Duration) {
		fmt.Printf("attempt %d: %v; retrying in %v\n", attempt, err, next)
	}))
	fmt.Println(calls, err)
	// Output:
	// attempt 1: 429 too many requests; retrying in 0s
	// 2 <nil>
}
