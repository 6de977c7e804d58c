//go:build integration

package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationNoGoroutineLeak drives every path that starts goroutines
// (renewers, local waiters, a remote waiter on a watch, hand-offs, a lock
// still held at Close) and checks that nothing is left once the Lockers are
// closed. The replicas' own connections are closed too, so the check needs
// no exception: whatever existed before the test is ignored, everything
// else must be gone. It must not run in parallel with other tests.
func TestIntegrationNoGoroutineLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	const prefix = "it-leak"
	ctx := ctxTimeout(t, time.Minute)
	opts := lease.Options{Prefix: prefix, LeaseDuration: 5 * time.Second, RenewInterval: 200 * time.Millisecond}
	a := newReplica(t, "pod-a", opts)
	b := newReplica(t, "pod-b", opts)

	// Plain acquire and release, with a few renewals in between.
	lk, err := a.locker.Acquire(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a renewal", func() bool { return a.metric(t, "renewals_total") > 0 })
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// A local hand-off.
	first, err := a.locker.Acquire(ctx, "handoff")
	if err != nil {
		t.Fatal(err)
	}
	local := a.metric(t, "contention_total", "where", "local")
	second := make(chan error, 1)
	go func() {
		lk, err := a.locker.Acquire(ctx, "handoff")
		if err == nil {
			err = lk.Release(ctx)
		}
		second <- err
	}()
	waitFor(t, 10*time.Second, "the local waiter", func() bool { return a.metric(t, "contention_total", "where", "local") > local })
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("hand-off: %v", err)
	}

	// A local waiter that gives up.
	held, err := a.locker.Acquire(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	gctx, giveUp := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	local = a.metric(t, "contention_total", "where", "local")
	go func() { _, err := a.locker.Acquire(gctx, "held"); gaveUp <- err }()
	waitFor(t, 10*time.Second, "the waiter that gives up", func() bool { return a.metric(t, "contention_total", "where", "local") > local })
	giveUp()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}

	// At Close: a lock still held, a local waiter behind it, and a remote
	// waiter asleep on a watch of b's Lease.
	local = a.metric(t, "contention_total", "where", "local")
	queued := make(chan error, 1)
	go func() { _, err := a.locker.Acquire(ctx, "held"); queued <- err }()
	waitFor(t, 10*time.Second, "the queued waiter", func() bool { return a.metric(t, "contention_total", "where", "local") > local })
	remote, err := b.locker.Acquire(ctx, "remote")
	if err != nil {
		t.Fatal(err)
	}
	watches := a.calls.get("watch")
	watching := make(chan error, 1)
	go func() { _, err := a.locker.Acquire(ctx, "remote"); watching <- err }()
	waitFor(t, 10*time.Second, "the remote waiter's watch", func() bool { return a.calls.get("watch") > watches })

	if err := a.close(); err != nil {
		t.Fatalf("close A: %v", err)
	}
	for what, ch := range map[string]chan error{"queued": queued, "watching": watching} {
		if err := <-ch; !errors.Is(err, lease.ErrClosed) {
			t.Errorf("%s waiter after Close: %v, want ErrClosed", what, err)
		}
	}
	if cause := context.Cause(held.Context()); !errors.Is(cause, lease.ErrClosed) || errors.Is(cause, lease.ErrLost) {
		t.Errorf("held lock's cause after Close: %v, want ErrClosed, not ErrLost", cause)
	}
	if l := getLease(t, lease.LeaseName(prefix, "held")); l != nil {
		t.Errorf("Close left the held Lease: %s", leaseSummary(l))
	}
	if err := remote.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.close(); err != nil {
		t.Fatalf("close B: %v", err)
	}
	goleak.VerifyNone(t, before)
}
