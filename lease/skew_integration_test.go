//go:build integration

package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
)

// skewedClock is a real clock whose wall time is off by a fixed amount.
// Time.Add keeps the monotonic reading, so durations measured with it are
// exact: a host whose clock is set wrong but runs at the right rate.
type skewedClock struct {
	clock.RealClock
	skew time.Duration
}

func (c skewedClock) Now() time.Time                  { return time.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestIntegrationClockSkew runs a Locker whose wall clock is 10 minutes
// ahead (and one 10 minutes behind) against a Locker with a correct clock:
// neither takes over the other's live Lease, because expiry is judged by
// observed change on each process's monotonic clock, never by comparing
// the remote renewTime with the local wall clock.
func TestIntegrationClockSkew(t *testing.T) {
	for _, tc := range []struct {
		name string
		skew time.Duration
	}{
		{"ahead", 10 * time.Minute},
		{"behind", -10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "it-skew-" + tc.name
			// Renewals every second on a 3 s lease: a contender that wrongly
			// trusted the (skewed) renewTime would see a Lease 10 minutes
			// stale, or 10 minutes in the future, and a 6 s wait covers two
			// full durations.
			opts := lease.Options{Prefix: prefix, LeaseDuration: 3 * time.Second}
			skewed := opts
			skewed.Clock = skewedClock{skew: tc.skew}
			normal := newReplica(t, "pod-normal-"+tc.name, opts)
			off := newReplica(t, "pod-skewed-"+tc.name, skewed)
			ctx := ctxTimeout(t, time.Minute)

			for _, pair := range []struct {
				what              string
				holder, contender *replica
			}{
				{"skewed contender", normal, off},
				{"skewed holder", off, normal},
			} {
				t.Run(pair.what, func(t *testing.T) {
					t.Parallel()
					holdAgainst(t, ctx, pair.what, prefix, pair.holder, pair.contender)
				})
			}
		})
	}
}

// holdAgainst has holder take a key and contender try for it, at once and
// then for two lease durations; the holder must keep it throughout.
func holdAgainst(t *testing.T, ctx context.Context, what, prefix string, holder, contender *replica) {
	key := holder.identity
	lk, err := holder.locker.TryAcquire(ctx, key)
	if err != nil {
		t.Errorf("%s: holder TryAcquire: %v", what, err)
		return
	}
	defer func() {
		if err := lk.Release(ctx); err != nil {
			t.Errorf("%s: holder Release: %v", what, err)
		}
	}()
	acquired := getLease(t, lease.LeaseName(prefix, key))

	if got, err := contender.locker.TryAcquire(ctx, key); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("%s: contender TryAcquire = %v, want ErrHeld", what, err)
		if got != nil {
			_ = got.Release(ctx)
		}
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	got, err := contender.locker.Acquire(wctx, key)
	// The deadline normally ends the watch wait (DeadlineExceeded); if it
	// ends an API call instead, client-go may word the error differently,
	// so any error once the deadline has passed counts.
	if err == nil || (!errors.Is(err, context.DeadlineExceeded) && wctx.Err() == nil) {
		t.Errorf("%s: contender Acquire = %v, want the deadline to pass", what, err)
		if got != nil {
			_ = got.Release(ctx)
		}
	}

	if err := lk.Err(); err != nil {
		t.Errorf("%s: holder Err after contention: %v", what, err)
	}
	if lk.Context().Err() != nil {
		t.Errorf("%s: holder Context ended: %v", what, context.Cause(lk.Context()))
	}
	l := getLease(t, lease.LeaseName(prefix, key))
	switch {
	case l == nil:
		t.Errorf("%s: Lease gone", what)
	case *l.Spec.HolderIdentity != lk.Holder() || l.UID != acquired.UID ||
		*l.Spec.LeaseTransitions != *acquired.Spec.LeaseTransitions || !l.Spec.AcquireTime.Equal(acquired.Spec.AcquireTime):
		t.Errorf("%s: Lease changed hands: %s, acquired as %s", what, leaseSummary(l), leaseSummary(acquired))
	case l.ResourceVersion == acquired.ResourceVersion:
		t.Errorf("%s: holder never renewed during two durations", what)
	}
	if n := contender.metric(t, "takeovers_total"); n != 0 {
		t.Errorf("%s: contender took over %v times", what, n)
	}
	if n := holder.metric(t, "losses_total"); n != 0 {
		t.Errorf("%s: holder lost %v locks", what, n)
	}
}
