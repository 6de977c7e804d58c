// Package leasetest provides a controllable lease.Interface for the unit
// tests of code that takes locks.
//
// Fake is a real *lease.Locker over an in-memory API server that has the
// Lease semantics of a real one (resourceVersions, optimistic updates,
// delete preconditions, watches). Locks it returns are real *lease.Lock
// values: Token increases, Context and Err behave as in production, local
// waiters queue. On top of that a test can make a key contended (Hold,
// Free), make a held lock lost (ForceLoss), and count acquisitions.
//
// A consumer's code depends on lease.Interface; its test passes a Fake:
//
//	f := leasetest.New(t, lease.Options{})
//	f.Hold("Node/worker-1") // another replica holds the target
//	svc := NewService(f)    // takes a lease.Interface
//	// ... assert svc requeues (lease.ErrHeld) ...
//	f.Free("Node/worker-1")
//	// ... assert svc proceeds, f.Acquisitions("Node/worker-1") == 1 ...
//	f.ForceLoss("Node/worker-1") // the lock's Context ends with lease.ErrLost
//
// Time is real by default and the lease duration is one hour, so forced
// contention never expires by itself; pass a fake clock in Options to
// control expiry.
package leasetest

import (
	"context"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/internal/fakeapi"
	"github.com/leasehold/leasehold/lease/internal/forceloss"
)

// OtherHolder is the holder identity Hold writes.
const OtherHolder = "leasetest/other-holder"

// NewClientset returns a fake clientset whose Leases behave like a real API
// server's (the plain fake clientset neither sets resourceVersions nor
// checks them). Use it to build a lease.Locker directly.
func NewClientset() *fake.Clientset { return fakeapi.New().Clientset() }

// Fake implements lease.Interface.
type Fake struct {
	srv       *fakeapi.Server
	clientset *fake.Clientset
	locker    *lease.Locker
	opts      lease.Options

	mu           sync.Mutex
	acquisitions map[string]int
}

var _ lease.Interface = (*Fake)(nil)

// New returns a Fake closed at the end of the test. Empty Namespace and
// Identity default to "default" and "leasetest"; a zero LeaseDuration
// defaults to one hour. Other fields keep lease.Options defaults.
func New(t testing.TB, opts lease.Options) *Fake {
	t.Helper()
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Identity == "" {
		opts.Identity = "leasetest"
	}
	if opts.Prefix == "" {
		opts.Prefix = "lock"
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = time.Hour
	}
	srv := fakeapi.New()
	cs := srv.Clientset()
	l, err := lease.New(cs.CoordinationV1(), opts)
	if err != nil {
		t.Fatalf("leasetest: %v", err)
	}
	f := &Fake{srv: srv, clientset: cs, locker: l, opts: opts, acquisitions: make(map[string]int)}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("leasetest: close: %v", err)
		}
	})
	return f
}

// TryAcquire is lease.Locker.TryAcquire.
func (f *Fake) TryAcquire(ctx context.Context, key string) (*lease.Lock, error) {
	return f.count(f.locker.TryAcquire(ctx, key))
}

// Acquire is lease.Locker.Acquire.
func (f *Fake) Acquire(ctx context.Context, key string) (*lease.Lock, error) {
	return f.count(f.locker.Acquire(ctx, key))
}

func (f *Fake) count(lk *lease.Lock, err error) (*lease.Lock, error) {
	if err == nil {
		f.mu.Lock()
		f.acquisitions[lk.Key()]++
		f.mu.Unlock()
	}
	return lk, err
}

// Acquisitions returns how many times key was acquired through f.
func (f *Fake) Acquisitions(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acquisitions[key]
}

// Hold makes another process hold key: TryAcquire returns lease.ErrHeld and
// Acquire waits, until Free (or, with a fake clock, until the lease
// duration passes unobserved). A lock f held on key is lost, and the key
// passes to the next queued Acquire, which then waits for the other holder.
func (f *Fake) Hold(key string) {
	name := lease.LeaseName(f.opts.Prefix, key)
	holder := OtherHolder
	secs := int32((f.opts.LeaseDuration + time.Second - 1) / time.Second)
	now := metav1.NewMicroTime(time.Now())
	// The other holder's Lease goes in first, over ours if we hold the key
	// (same object, new holder), as a takeover would; only then does our
	// lock end. Ending it first would let a queued waiter Create the Lease
	// in between and then be overwritten while its lock looked healthy.
	f.srv.Put(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   f.opts.Namespace,
			Labels:      map[string]string{lease.LabelManagedBy: lease.ManagedByValue, lease.LabelPrefix: f.opts.Prefix},
			Annotations: map[string]string{lease.AnnotationKey: key},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
	})
	forceloss.Func(f.locker, key, "leasetest: key taken by another holder")
}

// Free ends a Hold: the other holder deletes its Lease, which wakes waiting
// Acquire calls at once.
func (f *Fake) Free(key string) {
	if l := f.srv.Get(f.opts.Namespace, lease.LeaseName(f.opts.Prefix, key)); l != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == OtherHolder {
		f.srv.Delete(f.opts.Namespace, l.Name)
	}
}

// ForceLoss makes the lock currently held on key lost, as if its Lease had
// been deleted behind its back: its Context is cancelled with a cause
// matching lease.ErrLost, Err returns lease.ErrLost, Release returns
// lease.ErrLost, and the key is free again. It reports whether a lock was
// held.
func (f *Fake) ForceLoss(key string) bool {
	f.srv.Delete(f.opts.Namespace, lease.LeaseName(f.opts.Prefix, key))
	return forceloss.Func(f.locker, key, "forced by leasetest")
}

// Locker returns the real Locker behind f (for Sweep, Close, ...).
func (f *Fake) Locker() *lease.Locker { return f.locker }

// Clientset returns the fake clientset behind f, to count API calls with
// Actions() or inject failures with PrependReactor.
func (f *Fake) Clientset() *fake.Clientset { return f.clientset }

// Lease returns the stored Lease for key, or nil.
func (f *Fake) Lease(key string) *coordinationv1.Lease {
	return f.srv.Get(f.opts.Namespace, lease.LeaseName(f.opts.Prefix, key))
}
