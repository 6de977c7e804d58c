// Package backoff computes waits between attempts and runs the retry loop that uses
// them.
//
// A Policy is a pure function from an attempt number (and, for decorrelated jitter,
// the previous delay) to a duration; it holds no per-retry state, so one policy is
// shared by every caller. Retry is the only loop: bounded by attempts, by elapsed
// time and by the context, waiting on timers of an injected clock, never sleeping.
//
// # The wait schedule
//
// Attempts are numbered from 1. When attempt k fails and another attempt is allowed,
// Retry waits Delay(k) and then makes attempt k+1. No wait follows the last attempt:
// n attempts wait n-1 times. For the Standard preset without jitter (100ms doubling
// to a 1s cap) and the default bound of 10 attempts:
//
//	attempt k fails   wait before attempt k+1   total waited
//	 1                100ms                     0.1s
//	 2                200ms                     0.3s
//	 3                400ms                     0.7s
//	 4                800ms                     1.5s
//	 5                1s (capped)               2.5s
//	 6                1s                        3.5s
//	 7                1s                        4.5s
//	 8                1s                        5.5s
//	 9                1s                        6.5s
//	10                none: *ExhaustedError     6.5s
//
// So three attempts wait 300ms in total and four wait 700ms. With the preset's ±10%
// jitter each wait moves within its band, clamped into [100ms, 1s]: the first wait
// lies in [100ms, 110ms], a capped one in [900ms, 1s], and ten attempts wait between
// 5.86s and 6.65s in total. The totals count waits only; the time each attempt takes
// comes on top.
//
// # Choosing a policy
//
// Exponential (the original design's policy, ±JitterPercent around
// Base x Multiplier^(k-1), kept inside [Base, Max]) has a predictable schedule: every
// wait is within a known band of a number you can read off the table above. Pick it
// when the schedule has to be explained, asserted in tests (NoJitter) or bounded from
// below, and contention is light.
//
// FullJitter (uniform in [0, min(Max, Base x Multiplier^(k-1))]) spreads contenders
// furthest apart and, in the AWS Architecture Blog study "Exponential Backoff And
// Jitter", did the least total work (fewest calls to the contended resource), taking
// slightly longer to finish than decorrelated jitter. Pick it when many replicas or
// requests contend for the same thing, as for a lock in an alert storm. Its waits
// can be arbitrarily short, so it gives no lower bound.
//
// Decorrelated (uniform in [Base, 3 x previous delay], capped at Max) grows about as
// fast as the exponential schedule but each wait depends on the previous draw, so
// contenders that collided once drift apart quickly, while no wait is ever shorter
// than Base. Pick it for long waits, such as reconnecting to a server that is down,
// where a minimum spacing matters and synchronised retries would hurt.
//
// # Retry
//
// op returns nil to stop with its value; Permanent(err) to stop at once with err;
// RetryAfter(d, err) to make the next wait exactly d (a server's Retry-After, not
// capped by the policy's MaxPeriod); any other error to retry. Retry gives up with an
// *ExhaustedError (matching ErrExhausted) carrying the last error when the attempt
// bound is reached or when the next wait would end past the elapsed-time bound; it
// gives up early rather than wait for a failure it can foresee. When the context
// ends, before an attempt or during a wait, Retry returns at once with an error that
// matches ctx.Err(), context.Cause(ctx) and the last op error.
//
// # What is not guaranteed
//
//   - Waits are lower bounds on wall time. Timers fire late under load, and the time
//     op takes adds to the spacing between the starts of consecutive attempts.
//   - The elapsed-time bound is checked before each wait. Retry does not interrupt a
//     running op, so the total can exceed the bound by the duration of the last
//     attempt; give op a context deadline to bound that.
//   - Retry does not compare a wait with the context's deadline: a wait that outlasts
//     the deadline ends with the context's error, not with *ExhaustedError.
//   - Jitter reduces collisions between contenders; it does not prevent them, gives no
//     fairness between them, and is only as independent as the Rand source. Clamping
//     makes Exponential's jitter lopsided at the first attempt and at the cap.
//   - Schedules are reproducible only with NoJitter (Exponential) or an injected Rand.
//   - Decorrelated keeps no state: the caller passes the previous delay back in (Retry
//     does), and a caller that does not gets BasePeriod every time.
package backoff
