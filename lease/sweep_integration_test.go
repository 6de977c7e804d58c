//go:build integration

package lease_test

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationSweep runs Sweep periodically against four Leases: one of
// our prefix left behind by a crashed holder (deleted, but only once seen
// unchanged for the idle time), one held and renewed by a live Locker of
// the same prefix (never deleted), one of another prefix and one without
// our labels (never touched).
func TestIntegrationSweep(t *testing.T) {
	const (
		prefix = "it-sweep"
		idle   = time.Second // the shortest allowed: the sweeper's lease duration
	)
	ctx := ctxTimeout(t, time.Minute)
	sweeper := newReplica(t, "pod-sweeper", lease.Options{Prefix: prefix, LeaseDuration: idle})
	// The live Lease declares 2 s and is renewed about every 0.7 s: it never
	// stays unchanged as long as the sweeper requires.
	live := newReplica(t, "pod-live", lease.Options{Prefix: prefix, LeaseDuration: 2 * time.Second})
	liveLock, err := live.locker.TryAcquire(ctx, "live")
	if err != nil {
		t.Fatalf("live TryAcquire: %v", err)
	}
	defer func() {
		if err := liveLock.Release(ctx); err != nil {
			t.Errorf("live Release: %v", err)
		}
	}()

	leftover := createLease(t, handMadeLease(prefix, "leftover", "pod-dead/0000000000000000", 1))
	other := createLease(t, handMadeLease("it-other", "other", "pod-dead/0000000000000001", 1))
	unlabelled := createLease(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: lease.LeaseName(prefix, "unlabelled"), Namespace: ns}})

	// Sweep until the leftover is gone and the live Lease has survived
	// sweeps spanning twice its declared duration. The pause between
	// sweeps only paces the loop, as RunSweeper's interval would.
	first := time.Now()
	var deletedAt time.Duration
	total, sweeps := 0, 0
	for {
		n, err := sweeper.locker.Sweep(ctx, idle)
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		sweeps++
		since := time.Since(first)
		if n > 0 && deletedAt == 0 {
			deletedAt = since
		}
		total += n
		if deletedAt > 0 && since > 4*time.Second {
			break
		}
		if since > 20*time.Second {
			t.Fatalf("after %d sweeps over %v: leftover deleted at %v", sweeps, since, deletedAt)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if total != 1 {
		t.Errorf("Sweep deleted %d Leases in all, want exactly the leftover", total)
	}
	// Observation starts at the first Sweep: nothing may go before the
	// idle time (and the Lease's own 1 s) has been observed.
	if deletedAt < idle {
		t.Errorf("leftover deleted %v after the first Sweep saw it, before the idle time %v", deletedAt, idle)
	}
	if l := getLease(t, leftover.Name); l != nil {
		t.Errorf("leftover still there: %s", leaseSummary(l))
	}
	if l := getLease(t, lease.LeaseName(prefix, "live")); l == nil || *l.Spec.HolderIdentity != liveLock.Holder() {
		t.Errorf("live Lease: %s, want held by %s", leaseSummary(l), liveLock.Holder())
	}
	if err := liveLock.Err(); err != nil {
		t.Errorf("live lock: %v", err)
	}
	for _, want := range []*coordinationv1.Lease{other, unlabelled} {
		if l := getLease(t, want.Name); l == nil || l.ResourceVersion != want.ResourceVersion {
			t.Errorf("Lease not ours was touched: %s, want %s", leaseSummary(l), leaseSummary(want))
		}
	}
	if n := sweeper.metric(t, "swept_total"); n != 1 {
		t.Errorf("swept_total = %v, want 1", n)
	}
	if n := live.metric(t, "losses_total"); n != 0 {
		t.Errorf("live Locker lost %v locks", n)
	}
	t.Logf("%d sweeps; leftover deleted by the sweep ending %v after the first", sweeps, deletedAt.Round(time.Millisecond))
}
