package lease_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

func Example() {
	// In production: clientset.CoordinationV1() from a real clientset.
	client := leasetest.NewClientset().CoordinationV1()
	locker, err := lease.New(client, lease.Options{
		Namespace: "leasehold-system",
		Identity:  "gateway-7d9f-abcde", // the pod name
		Prefix:    "gw-lock",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lk, err := locker.Acquire(ctx, "fingerprint/3f2a")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lk.Release(context.Background()) // releases even if ctx has ended

	// The critical section runs under lk.Context(), which ends if the lock
	// is lost; right before the protected write, check Err and send the
	// token along so the resource can reject stale holders.
	if err := lk.Err(); err != nil {
		fmt.Println("lost:", err)
		return
	}
	fmt.Println("holding", lk.Key(), "token set:", !lk.Token().IsZero())
	// Output: holding fingerprint/3f2a token set: true
}

func ExampleLocker_TryAcquire() {
	locker, _ := lease.New(leasetest.NewClientset().CoordinationV1(), lease.Options{
		Namespace: "leasehold-system", Identity: "orchestrator-0", Prefix: "ro-lock",
	})
	defer locker.Close()
	ctx := context.Background()

	first, _ := locker.TryAcquire(ctx, "Node/worker-1")
	_, err := locker.TryAcquire(ctx, "Node/worker-1") // no re-entrancy, no API call
	fmt.Println(errors.Is(err, lease.ErrHeld))        // requeue and try later

	_ = first.Release(ctx)
	second, _ := locker.TryAcquire(ctx, "Node/worker-1")
	order, _ := second.Token().Compare(first.Token())
	fmt.Println("token increased:", order > 0)
	_ = second.Release(ctx)
	// Output:
	// true
	// token increased: true
}

func ExampleLock_Context() {
	locker, _ := lease.New(leasetest.NewClientset().CoordinationV1(), lease.Options{
		Namespace: "leasehold-system", Identity: "pod-0",
	})
	defer locker.Close()
	lk, _ := locker.TryAcquire(context.Background(), "k")
	_ = lk.Release(context.Background())

	cause := context.Cause(lk.Context())
	fmt.Println(errors.Is(cause, lease.ErrReleased), errors.Is(cause, lease.ErrLost))
	// Output: true false
}
