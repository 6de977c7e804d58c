package locks_test

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

const ns = "leasehold-system"

// t0 is the fake clock's start, and "now" of the rendering tests.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeAPI is a fake clientset with Lease semantics (resourceVersions,
// preconditions, label selectors) and the Lease client of ns.
type fakeAPI struct {
	cs     *fake.Clientset
	leases coordinationv1client.LeaseInterface
}

func newFakeAPI() *fakeAPI {
	cs := leasetest.NewClientset()
	return &fakeAPI{cs: cs, leases: cs.CoordinationV1().Leases(ns)}
}

// stamped is a Lease labelled and filled in the way a Locker writes it,
// acquired and last renewed at the given times.
func stamped(prefix, key, holder string, durationSeconds int32, acquired, renewed time.Time, transitions int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        lease.LeaseName(prefix, key),
			Namespace:   ns,
			Labels:      map[string]string{lease.LabelManagedBy: lease.ManagedByValue, lease.LabelPrefix: prefix},
			Annotations: map[string]string{lease.AnnotationKey: key},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To(durationSeconds),
			AcquireTime:          ptr.To(metav1.NewMicroTime(acquired)),
			RenewTime:            ptr.To(metav1.NewMicroTime(renewed)),
			LeaseTransitions:     ptr.To(transitions),
		},
	}
}

func (f *fakeAPI) create(t *testing.T, l *coordinationv1.Lease) *coordinationv1.Lease {
	t.Helper()
	created, err := f.leases.Create(context.Background(), l, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", l.Name, err)
	}
	return created
}

// renew writes a new renewTime the way a holder's renewal does.
func (f *fakeAPI) renew(t *testing.T, name string, at time.Time) *coordinationv1.Lease {
	t.Helper()
	c := f.leases
	cur, err := c.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("renew: get %s: %v", name, err)
	}
	cur.Spec.RenewTime = ptr.To(metav1.NewMicroTime(at))
	updated, err := c.Update(context.Background(), cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("renew %s: %v", name, err)
	}
	return updated
}

func (f *fakeAPI) remove(t *testing.T, name string) {
	t.Helper()
	if err := f.leases.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
}

// get returns the stored Lease, or nil if there is none.
func (f *fakeAPI) get(t *testing.T, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := f.leases.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return l
}

// deletes returns the delete actions the clientset has seen.
func (f *fakeAPI) deletes() []clienttesting.DeleteAction {
	var out []clienttesting.DeleteAction
	for _, a := range f.cs.Actions() {
		if d, ok := a.(clienttesting.DeleteAction); ok && a.GetVerb() == "delete" && a.GetResource().Resource == "leases" {
			out = append(out, d)
		}
	}
	return out
}

// sweepAsync runs Sweep in a goroutine; the result arrives on the channel.
type sweepResult struct {
	rep locks.SweepReport
	err error
}

func sweepAsync(ctx context.Context, s *locks.Sweeper) <-chan sweepResult {
	ch := make(chan sweepResult, 1)
	go func() {
		rep, err := s.Sweep(ctx)
		ch <- sweepResult{rep, err}
	}()
	return ch
}

// waitForTimer waits until the sweep has armed its idle timer on clk:
// only then may the test change Leases "during the watch" and step the
// clock. It polls a state, it does not time anything.
func waitForTimer(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the sweep never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// result waits for the sweep to return.
func result(t *testing.T, ch <-chan sweepResult) sweepResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the sweep did not return after the clock passed the idle time")
		return sweepResult{}
	}
}

// decisions summarises a report as "reason:key" strings, in report order.
func decisions(ds []locks.Decision) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, string(d.Reason)+":"+d.Record.Key)
	}
	return out
}
