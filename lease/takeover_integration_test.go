//go:build integration

package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationContentionAndTakeover covers a key held by another
// process: refused while the holder is alive, taken over (one Update) only
// after the Lease was seen unchanged for its whole duration, and never
// deleted by a holder whose Lease someone else has taken.
func TestIntegrationContentionAndTakeover(t *testing.T) {
	const prefix = "it-take"
	ctx := ctxTimeout(t, 2*time.Minute)
	opts := lease.Options{Prefix: prefix, LeaseDuration: 3 * time.Second}

	t.Run("live holder", func(t *testing.T) {
		a := newReplica(t, "pod-a", opts)
		b := newReplica(t, "pod-b", opts)
		lk, err := a.locker.TryAcquire(ctx, "live")
		if err != nil {
			t.Fatalf("A TryAcquire: %v", err)
		}
		if _, err := b.locker.TryAcquire(ctx, "live"); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("B TryAcquire = %v, want ErrHeld", err)
		}
		if n := b.metric(t, "contention_total", "where", "remote"); n < 1 {
			t.Errorf("B remote contention = %v, want at least 1", n)
		}
		if l := getLease(t, lease.LeaseName(prefix, "live")); l == nil || *l.Spec.HolderIdentity != lk.Holder() {
			t.Errorf("Lease after B's attempt: %s, want holder %s", leaseSummary(l), lk.Holder())
		}
		if err := lk.Err(); err != nil {
			t.Errorf("A Err: %v", err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("A Release: %v", err)
		}
	})

	t.Run("crashed holder", func(t *testing.T) {
		// A Lease nobody renews, as a holder that crashed leaves it.
		const key = "crashed"
		crashed := createLease(t, handMadeLease(prefix, key, "pod-dead/0000000000000000", 2))
		b := newReplica(t, "pod-b", opts)

		start := time.Now()
		if _, err := b.locker.TryAcquire(ctx, key); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("TryAcquire of a freshly seen Lease = %v, want ErrHeld", err)
		}
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		lk, err := b.locker.Acquire(actx, key)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		elapsed := time.Since(start)
		defer func() {
			if err := lk.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		}()

		// Expiry is by observation: B first saw the Lease at start and may
		// not take it before seeing it unchanged for the 2 s it declares.
		if elapsed < 2*time.Second {
			t.Errorf("took over after %v, before the declared duration of 2s had been observed", elapsed)
		}
		t.Logf("takeover %v after first sight of the crashed Lease", elapsed.Round(time.Millisecond))

		l := getLease(t, crashed.Name)
		switch {
		case l == nil:
			t.Fatal("Lease gone after takeover")
		case l.UID != crashed.UID:
			t.Errorf("UID %s, want %s: a takeover updates the Lease, it does not re-create it", l.UID, crashed.UID)
		case *l.Spec.HolderIdentity != lk.Holder():
			t.Errorf("holder %s, want %s", *l.Spec.HolderIdentity, lk.Holder())
		case l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1:
			t.Errorf("leaseTransitions %v, want 1", l.Spec.LeaseTransitions)
		case l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 3:
			t.Errorf("leaseDurationSeconds %v, want B's 3", l.Spec.LeaseDurationSeconds)
		case l.Spec.AcquireTime == nil || l.Spec.RenewTime == nil || l.Spec.AcquireTime.Equal(crashed.Spec.AcquireTime):
			t.Errorf("acquireTime/renewTime not rewritten: %s", leaseSummary(l))
		}
		crashedToken, err := lease.ParseToken(crashed.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		if mustCompare(t, lk.Token(), crashedToken) <= 0 {
			t.Errorf("token %s not above the crashed Lease's resourceVersion %s", lk.Token(), crashedToken)
		}
		if n := b.metric(t, "takeovers_total"); n != 1 {
			t.Errorf("takeovers = %v, want 1", n)
		}
		if n := b.metric(t, "acquisitions_total", "path", "takeover"); n != 1 {
			t.Errorf("takeover acquisitions = %v, want 1", n)
		}
	})

	t.Run("taken over, seen by the renewer", func(t *testing.T) {
		// Frequent renewals, so the renewer finds the intruder quickly.
		x := newReplica(t, "pod-x", lease.Options{Prefix: prefix, LeaseDuration: 3 * time.Second, RenewInterval: 300 * time.Millisecond})
		const key = "stolen-renew"
		lk, err := x.locker.TryAcquire(ctx, key)
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		intruded := intrude(t, lease.LeaseName(prefix, key), "pod-intruder/0000000000000001")
		select {
		case <-lk.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Context not cancelled 10s after the Lease was taken over")
		}
		if cause := context.Cause(lk.Context()); !errors.Is(cause, lease.ErrLost) {
			t.Errorf("cause = %v, want ErrLost", cause)
		}
		if !errors.Is(lk.Err(), lease.ErrLost) {
			t.Errorf("Err = %v, want ErrLost", lk.Err())
		}
		if n := x.metric(t, "losses_total", "reason", "taken_over"); n != 1 {
			t.Errorf("losses{taken_over} = %v, want 1", n)
		}
		before := x.calls.snapshot()
		if err := lk.Release(ctx); !errors.Is(err, lease.ErrLost) {
			t.Errorf("Release after loss = %v, want ErrLost", err)
		}
		if d := x.calls.since(before); d.total() != 0 {
			t.Errorf("Release after loss sent %v, want nothing", d)
		}
		if l := getLease(t, intruded.Name); l == nil || l.ResourceVersion != intruded.ResourceVersion {
			t.Errorf("intruder's Lease changed: %s, want %s", leaseSummary(l), leaseSummary(intruded))
		}
	})

	t.Run("taken over, seen by Release", func(t *testing.T) {
		// No renewal runs during the test, so Release itself meets the
		// intruder: its Delete carries our resourceVersion and must fail.
		y := newReplica(t, "pod-y", lease.Options{Prefix: prefix, LeaseDuration: 30 * time.Second, RenewInterval: 20 * time.Second})
		const key = "stolen-release"
		lk, err := y.locker.TryAcquire(ctx, key)
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		intruded := intrude(t, lease.LeaseName(prefix, key), "pod-intruder/0000000000000002")
		before := y.calls.snapshot()
		if err := lk.Release(ctx); !errors.Is(err, lease.ErrLost) {
			t.Errorf("Release of a taken-over Lease = %v, want ErrLost", err)
		}
		// One conditional Delete (refused) and one Get to tell a takeover
		// from our own unseen renewal.
		if d := y.calls.since(before); d.total() != 2 || d["delete"] != 1 || d["get"] != 1 {
			t.Errorf("Release sent %v, want one delete and one get", d)
		}
		if l := getLease(t, intruded.Name); l == nil || l.ResourceVersion != intruded.ResourceVersion {
			t.Errorf("intruder's Lease changed: %s, want %s", leaseSummary(l), leaseSummary(intruded))
		}
		if n := y.metric(t, "releases_total", "outcome", "lost"); n != 1 {
			t.Errorf("releases{lost} = %v, want 1", n)
		}
	})
}
