//go:build integration

package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// TestIntegrationAPICalls counts the requests that reach the API server for
// each step of the common path: one Create to take a free key, one Delete
// to release it, one Update per local hand-off, none to be refused a key
// this Locker already holds.
func TestIntegrationAPICalls(t *testing.T) {
	// Renewals would add Updates. With these settings none is due while the
	// test runs; the renewals metric is checked at the end to prove it.
	r := newReplica(t, "pod-calls", lease.Options{Prefix: "it-calls", LeaseDuration: 30 * time.Second, RenewInterval: 20 * time.Second})
	ctx := ctxTimeout(t, 30*time.Second)
	const key = "calls"
	name := lease.LeaseName("it-calls", key)

	before := r.calls.snapshot()
	a, err := r.locker.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("TryAcquire free key: %v", err)
	}
	if d := r.calls.since(before); d.total() != 1 || d["create"] != 1 {
		t.Errorf("TryAcquire of a free key sent %v, want exactly one create", d)
	}

	before = r.calls.snapshot()
	if _, err := r.locker.TryAcquire(ctx, key); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second TryAcquire in the same Locker = %v, want ErrHeld", err)
	}
	if d := r.calls.since(before); d.total() != 0 {
		t.Errorf("TryAcquire of a key held by the same Locker sent %v, want nothing", d)
	}

	// Local hand-off: B queues behind A. The contention metric is counted
	// under the Locker's lock before B joins the queue, and Release takes
	// that lock to pick the next waiter, so once the metric moves B is
	// certain to be handed the lock.
	local := r.metric(t, "contention_total", "where", "local")
	type result struct {
		lk  *lease.Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		lk, err := r.locker.Acquire(ctx, key)
		got <- result{lk, err}
	}()
	waitFor(t, 10*time.Second, "the second goroutine to queue", func() bool {
		return r.metric(t, "contention_total", "where", "local") > local
	})
	before = r.calls.snapshot()
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release A: %v", err)
	}
	res := <-got
	if res.err != nil {
		t.Fatalf("Acquire B: %v", res.err)
	}
	b := res.lk
	if d := r.calls.since(before); d.total() != 1 || d["update"] != 1 {
		t.Errorf("local hand-off sent %v, want exactly one update", d)
	}
	if cause := a.Context().Err(); cause == nil || !errors.Is(a.Err(), lease.ErrReleased) {
		t.Errorf("A after hand-off: Context().Err()=%v Err()=%v, want cancelled and ErrReleased", cause, a.Err())
	}
	if mustCompare(t, b.Token(), a.Token()) <= 0 {
		t.Errorf("hand-off token %s not above %s", b.Token(), a.Token())
	}
	if b.Holder() == a.Holder() {
		t.Errorf("hand-off kept holder id %s", a.Holder())
	}
	if l := getLease(t, name); l == nil || *l.Spec.HolderIdentity != b.Holder() || *l.Spec.LeaseTransitions != 1 || l.ResourceVersion != b.Token().String() {
		t.Errorf("after hand-off the Lease is %+v, want holder %s, 1 transition, resourceVersion %s", leaseSummary(l), b.Holder(), b.Token())
	}
	if n := r.metric(t, "acquisitions_total", "path", "handoff"); n != 1 {
		t.Errorf("handoff acquisitions = %v, want 1", n)
	}

	before = r.calls.snapshot()
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release B: %v", err)
	}
	if d := r.calls.since(before); d.total() != 1 || d["delete"] != 1 {
		t.Errorf("Release sent %v, want exactly one delete", d)
	}
	if l := getLease(t, name); l != nil {
		t.Errorf("Lease still there after Release: %+v", leaseSummary(l))
	}

	// Acquire (the waiting form) of a free key costs the same single Create,
	// and its token is above every earlier one although the Lease was
	// deleted in between.
	before = r.calls.snapshot()
	c, err := r.locker.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("Acquire free key: %v", err)
	}
	if d := r.calls.since(before); d.total() != 1 || d["create"] != 1 {
		t.Errorf("Acquire of a free key sent %v, want exactly one create", d)
	}
	if mustCompare(t, c.Token(), b.Token()) <= 0 {
		t.Errorf("token after re-create %s not above %s", c.Token(), b.Token())
	}
	if err := c.Release(ctx); err != nil {
		t.Fatalf("Release C: %v", err)
	}
	if n := r.metric(t, "renewals_total"); n != 0 {
		t.Fatalf("%v renewals ran during the test: the counts above are not clean", n)
	}
}
