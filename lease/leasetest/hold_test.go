package leasetest_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

// localContention reads contention_total{where="local"}: it counts the
// Acquire calls that queued behind a local holder.
func localContention(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "leasehold_lock_contention_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "where" && lp.GetValue() == "local" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (f waitCounter) watches() int {
	n := 0
	for _, a := range f.Clientset().Actions() {
		if a.GetVerb() == "watch" {
			n++
		}
	}
	return n
}

type waitCounter struct{ *leasetest.Fake }

// Hold while local waiters are queued: the lock is lost and the key passes
// to the head waiter, which must find the other holder's Lease and wait,
// never acquire a lock over it. (Hold used to delete the Lease and hand the
// key on before writing the other holder's Lease, so a waiter could Create
// in between and then be overwritten while its lock looked healthy.)
func TestHoldWithQueuedWaiters(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := waitCounter{leasetest.New(t, lease.Options{Registerer: reg})}
	ctx := context.Background()
	for i := range 500 {
		key := fmt.Sprintf("k%d", i)
		lk, err := f.TryAcquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *lease.Lock, 2)
		for range 2 {
			go func() {
				w, err := f.Acquire(ctx, key)
				if err != nil {
					t.Error(err)
				}
				got <- w
			}()
		}
		for localContention(t, reg) < float64(2*(i+1)) {
			// The counter is bumped under the Locker's lock together with
			// the queueing, so once it reads 2 both waiters are queued.
			runtime.Gosched()
		}
		watches := f.watches()
		f.Hold(key)
		if lk.Err() == nil {
			t.Fatal("the lock survived Hold")
		}
		// The head waiter either waits on the other holder's Lease (a
		// watch) or, wrongly, returns a lock.
		for len(got) == 0 && f.watches() == watches {
			runtime.Gosched()
		}
		if len(got) > 0 {
			w := <-got
			t.Fatalf("run %d: a waiter acquired %s (Err %v) while the Lease names %q", i, key, w.Err(), *f.Lease(key).Spec.HolderIdentity)
		}
		if h := *f.Lease(key).Spec.HolderIdentity; h != leasetest.OtherHolder {
			t.Fatalf("run %d: Lease held by %q after Hold", i, h)
		}
		f.Free(key)
		first := <-got
		if first == nil || first.Err() != nil || *f.Lease(key).Spec.HolderIdentity != first.Holder() {
			t.Fatalf("run %d: first waiter after Free: %v", i, first)
		}
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		second := <-got
		if err := second.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
