package backoff

import (
	"errors"
	"fmt"
	"time"
)

// ErrExhausted matches every *ExhaustedError with errors.Is, for callers that only
// need to know that Retry gave up, not how many attempts it made.
var ErrExhausted = errors.New("backoff: retries exhausted")

// ExhaustedError is returned by Retry when the attempt bound or the elapsed-time
// bound stops it. Err is the error of the last attempt.
type ExhaustedError struct {
	Attempts int
	Err      error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("backoff: gave up after %s: %v", countAttempts(e.Attempts), e.Err)
}

func countAttempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// Unwrap returns the last attempt's error, so errors.Is and errors.As reach it.
func (e *ExhaustedError) Unwrap() error { return e.Err }

// Is reports whether target is ErrExhausted.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// permanentError marks an error that retrying cannot fix. Its message is the inner
// error's, so wrapping it inside another error changes no text.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: Retry stops at once and returns err
// itself (without the marker), so errors.Is and errors.As behave as if Permanent had
// not been called. If op wraps the marked error further (fmt.Errorf("...: %w",
// Permanent(err))), Retry still stops and returns op's error as it is. Permanent(nil)
// is nil, which Retry treats as success.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// retryAfterError carries a wait the failed operation asked for.
type retryAfterError struct {
	wait time.Duration
	err  error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter reports a failed attempt and asks for the next wait to be exactly d,
// typically a server's Retry-After. The wait replaces the policy's delay for that
// one retry only and is not capped by MaxPeriod (the server knows better than our
// schedule); it is still subject to the attempt and elapsed-time bounds and to the
// context. A negative d counts as zero. A nil err is replaced by an error that names
// the wait, so the attempt still counts as failed.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = fmt.Errorf("retry after %v requested", d)
	}
	return &retryAfterError{wait: max(d, 0), err: err}
}
