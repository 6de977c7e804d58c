package leasetest_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestForcedContention(t *testing.T) {
	f := leasetest.New(t, lease.Options{})
	ctx := context.Background()
	f.Hold("k")
	if _, err := f.TryAcquire(ctx, "k"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("err = %v", err)
	}
	done := make(chan *lease.Lock, 1)
	go func() {
		lk, err := f.Acquire(ctx, "k")
		if err != nil {
			t.Error(err)
		}
		done <- lk
	}()
	// Free wakes the waiter through its watch.
	for f.Acquisitions("k") == 0 {
		f.Free("k")
		select {
		case lk := <-done:
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if f.Acquisitions("k") != 1 {
				t.Fatalf("acquisitions = %d", f.Acquisitions("k"))
			}
			return
		default:
		}
	}
}

func TestForcedLoss(t *testing.T) {
	f := leasetest.New(t, lease.Options{})
	ctx := context.Background()
	lk, err := f.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if !f.ForceLoss("k") {
		t.Fatal("no lock to lose")
	}
	if !errors.Is(context.Cause(lk.Context()), lease.ErrLost) || !errors.Is(lk.Err(), lease.ErrLost) {
		t.Fatalf("cause %v err %v", context.Cause(lk.Context()), lk.Err())
	}
	if err := lk.Release(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Release = %v", err)
	}
	again, err := f.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatalf("key not free after a forced loss: %v", err)
	}
	if c, _ := again.Token().Compare(lk.Token()); c <= 0 {
		t.Fatal("token order")
	}
	if f.Acquisitions("k") != 2 {
		t.Fatalf("acquisitions = %d", f.Acquisitions("k"))
	}
	if f.ForceLoss("other") {
		t.Fatal("ForceLoss of an unheld key reported a loss")
	}
}

func TestHoldTakesAHeldKey(t *testing.T) {
	f := leasetest.New(t, lease.Options{})
	lk, err := f.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	f.Hold("k")
	if !errors.Is(lk.Err(), lease.ErrLost) {
		t.Fatalf("Err = %v", lk.Err())
	}
	if _, err := f.TryAcquire(context.Background(), "k"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("err = %v", err)
	}
}
