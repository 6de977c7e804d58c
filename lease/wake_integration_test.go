//go:build integration

package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationReleaseWakesRemoteWaiter has two Lockers pass one key back
// and forth: each time, the waiter is already watching the holder's Lease
// when the holder releases. With a 30 s lease and a 10 s bound on each
// Acquire, success can only come from the watch reporting the deletion;
// the waiter then takes the key with a Create, not a takeover.
func TestIntegrationReleaseWakesRemoteWaiter(t *testing.T) {
	const (
		prefix = "it-wake"
		key    = "wake"
		rounds = 20
	)
	opts := lease.Options{Prefix: prefix, LeaseDuration: 30 * time.Second}
	a := newReplica(t, "pod-a", opts)
	b := newReplica(t, "pod-b", opts)
	ctx := ctxTimeout(t, 2*time.Minute)

	held, err := a.locker.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("first TryAcquire: %v", err)
	}
	holder, waiter := a, b
	var latencies []time.Duration
	for round := 0; round < rounds; round++ {
		creates := waiter.metric(t, "acquisitions_total", "path", "create")
		watches := waiter.calls.get("watch")
		type result struct {
			lk  *lease.Lock
			err error
		}
		got := make(chan result, 1)
		go func() {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			lk, err := waiter.locker.Acquire(actx, key)
			got <- result{lk, err}
		}()
		// The watch is counted once its response headers arrived: from
		// then on the waiter is asleep on the watch.
		waitFor(t, 10*time.Second, "the waiter's watch", func() bool { return waiter.calls.get("watch") > watches })

		start := time.Now()
		if err := held.Release(ctx); err != nil {
			t.Fatalf("round %d: Release: %v", round, err)
		}
		res := <-got
		latency := time.Since(start)
		if res.err != nil {
			t.Fatalf("round %d: waiter's Acquire: %v (a 30s lease and a 10s bound: only the watch can wake it in time)", round, res.err)
		}
		latencies = append(latencies, latency)
		if n := waiter.metric(t, "acquisitions_total", "path", "create"); n != creates+1 {
			t.Fatalf("round %d: waiter's create acquisitions %v -> %v, want one more", round, creates, n)
		}
		if mustCompare(t, res.lk.Token(), held.Token()) <= 0 {
			t.Fatalf("round %d: token %s not above %s", round, res.lk.Token(), held.Token())
		}
		held = res.lk
		holder, waiter = waiter, holder
	}
	if err := held.Release(ctx); err != nil {
		t.Fatalf("last Release: %v", err)
	}
	for _, r := range []*replica{a, b} {
		if n := r.metric(t, "takeovers_total"); n != 0 {
			t.Errorf("%s: %v takeovers, want 0", r.identity, n)
		}
	}
	t.Logf("release -> remote acquisition over %d rounds: p50 %v, p95 %v, max %v",
		rounds, percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 100))
}
