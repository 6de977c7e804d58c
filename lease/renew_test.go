package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
)

func TestRenewalMovesTheSafeDeadline(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	defer lk.Release(ctx)
	first := e.stored("k")
	e.renewerArmed(l)
	e.clk.Step(10 * time.Second)
	eventually(t, "renewal", func() bool { return lk.SafeDeadline().Equal(t0.Add(37 * time.Second)) })
	st := e.stored("k")
	if st.ResourceVersion == first.ResourceVersion || !st.Spec.RenewTime.Time.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("renewal not written: %+v", st)
	}
	if !st.Spec.AcquireTime.Time.Equal(t0) || *st.Spec.HolderIdentity != lk.Holder() {
		t.Fatalf("renewal changed acquireTime or holder: %+v", st.Spec)
	}
	if lk.Token().String() != first.ResourceVersion {
		t.Fatal("renewal must not change the token")
	}
	upd := e.cs.Actions()[len(e.cs.Actions())-1].(clienttesting.UpdateAction)
	if upd.GetObject().(interface{ GetResourceVersion() string }).GetResourceVersion() != first.ResourceVersion {
		t.Fatal("renewal Update must carry the resourceVersion of our last write")
	}
}

func TestRenewalFailureLosesAtTheSafeDeadline(t *testing.T) {
	for _, mode := range []string{"hanging", "failing"} {
		t.Run(mode, func(t *testing.T) {
			e, l, lk := holding(t)
			ctx := context.Background()
			var updates func() int
			switch mode {
			case "hanging":
				entered, release := e.hangUpdates()
				t.Cleanup(release) // before Close (cleanups run last-in first-out)
				updates = entered
			case "failing":
				e.cs.PrependReactor("update", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewInternalError(errors.New("etcd unavailable"))
				})
				updates = func() int { return e.calls("update") }
			}
			e.renewerArmed(l)
			// Renewals at 10s (and, when failing, every 2.5s after) do not succeed.
			for now := 10 * time.Second; now < 27*time.Second; now += 2500 * time.Millisecond {
				e.clk.SetTime(t0.Add(now))
				eventually(t, "renewal attempt", func() bool { return updates() >= 1 })
				e.waitersAtLeast(1)
			}
			e.clk.SetTime(t0.Add(27*time.Second - time.Nanosecond))
			if lk.Err() != nil || isDone(lk.Context()) {
				t.Fatalf("lost before the safe deadline: %v", lk.Err())
			}
			e.clk.SetTime(t0.Add(27 * time.Second))
			select {
			case <-lk.Context().Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Context not cancelled at the safe deadline")
			}
			if cause := context.Cause(lk.Context()); !errors.Is(cause, ErrLost) || !strings.Contains(cause.Error(), "deadline") {
				t.Fatalf("cause = %v", cause)
			}
			if !errors.Is(lk.Err(), ErrLost) {
				t.Fatalf("Err = %v", lk.Err())
			}
			deletes := e.calls("delete")
			if err := lk.Release(ctx); !errors.Is(err, ErrLost) {
				t.Fatalf("Release after loss = %v", err)
			}
			if e.calls("delete") != deletes {
				t.Fatal("Release after loss touched the Lease")
			}
		})
	}
}

func TestErrIsSynchronousAfterAPause(t *testing.T) {
	e, _, lk := holding(t)
	// Jump past the deadline in one go, as a resumed process would see
	// it: Err must not wait for the renewer's timer.
	_, release := e.hangUpdates()
	defer release()
	e.clk.SetTime(t0.Add(time.Hour))
	if !errors.Is(lk.Err(), ErrLost) {
		t.Fatalf("Err = %v", lk.Err())
	}
	if !errors.Is(context.Cause(lk.Context()), ErrLost) {
		t.Fatal("Err found the loss but Context was not cancelled")
	}
}

func TestTakeoverObservedByRenewalLosesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *env)
		reason string
	}{
		{"taken over", func(e *env) { e.foreign("k", "pod-b/1") }, "taken_over"},
		{"deleted", func(e *env) { e.srv.Delete(testNS, LeaseName("gw-lock", "k")) }, "deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, l, lk := holding(t)
			ctx := context.Background()
			e.renewerArmed(l)
			tc.change(e)
			e.clk.Step(10 * time.Second) // one renewal, far before the safe deadline
			select {
			case <-lk.Context().Done():
			case <-time.After(10 * time.Second):
				t.Fatal("loss not signalled")
			}
			if cause := context.Cause(lk.Context()); !errors.Is(cause, ErrLost) || !strings.Contains(cause.Error(), tc.reason) {
				t.Fatalf("cause = %v, want ErrLost (%s)", cause, tc.reason)
			}
			if err := lk.Release(ctx); !errors.Is(err, ErrLost) {
				t.Fatalf("Release = %v", err)
			}
			if e.calls("delete") != 0 {
				t.Fatal("Release after loss deleted")
			}
		})
	}
}

func TestRenewalAdoptsItsOwnUnseenWrite(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	defer lk.Release(ctx)
	e.renewerArmed(l)
	// The Lease changes without a new holder (an earlier renewal landed
	// after its response was lost, or someone edited a label).
	st := e.stored("k")
	st.Labels["team"] = "x"
	e.srv.Put(st)
	e.clk.Step(10 * time.Second)
	eventually(t, "renewal", func() bool { return lk.SafeDeadline().After(t0.Add(27 * time.Second)) })
	if lk.Err() != nil {
		t.Fatal(lk.Err())
	}
	if e.calls("update") != 2 || e.calls("get") != 1 {
		t.Fatalf("want Update (conflict), Get, Update: %v", e.cs.Actions())
	}
}
