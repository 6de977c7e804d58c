package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

var leasesGR = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func TestTryAcquireFreeKeyIsOneCreate(t *testing.T) {
	e := newEnv(t)
	l := e.locker("pod-a")
	ctx := context.Background()

	lk, err := l.TryAcquire(ctx, "fingerprint/abc")
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	if got := e.totalCalls(); got != 1 || e.calls("create") != 1 {
		t.Fatalf("API calls = %d (%v), want exactly one create", got, e.cs.Actions())
	}
	st := e.stored("fingerprint/abc")
	if st == nil {
		t.Fatal("no lease stored")
	}
	if got := *st.Spec.HolderIdentity; got != lk.Holder() || !strings.HasPrefix(got, "pod-a/") {
		t.Errorf("holder = %q, lock holder %q", got, lk.Holder())
	}
	if *st.Spec.LeaseDurationSeconds != 30 || *st.Spec.LeaseTransitions != 0 {
		t.Errorf("duration %d transitions %d, want 30 and 0", *st.Spec.LeaseDurationSeconds, *st.Spec.LeaseTransitions)
	}
	if st.Labels[LabelManagedBy] != ManagedByValue || st.Labels[LabelPrefix] != "gw-lock" || st.Annotations[AnnotationKey] != "fingerprint/abc" {
		t.Errorf("labels %v annotations %v", st.Labels, st.Annotations)
	}
	if !st.Spec.AcquireTime.Time.Equal(t0) || !st.Spec.RenewTime.Time.Equal(t0) {
		t.Errorf("acquire/renew time %v/%v, want %v", st.Spec.AcquireTime, st.Spec.RenewTime, t0)
	}
	if lk.Token().String() != st.ResourceVersion {
		t.Errorf("token %v, want resourceVersion %s", lk.Token(), st.ResourceVersion)
	}
	if lk.Key() != "fingerprint/abc" || lk.Err() != nil || isDone(lk.Context()) {
		t.Fatalf("fresh lock: key %q err %v done %v", lk.Key(), lk.Err(), isDone(lk.Context()))
	}
	if got, want := lk.SafeDeadline(), t0.Add(27*time.Second); !got.Equal(want) {
		t.Errorf("safe deadline %v, want %v", got, want)
	}

	// Release: exactly one Delete, with UID and resourceVersion preconditions.
	e.cs.ClearActions()
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	acts := e.cs.Actions()
	if len(acts) != 1 || acts[0].GetVerb() != "delete" {
		t.Fatalf("release calls: %v", acts)
	}
	pre := acts[0].(clienttesting.DeleteAction).GetDeleteOptions().Preconditions
	if pre == nil || pre.UID == nil || *pre.UID != st.UID || pre.ResourceVersion == nil || *pre.ResourceVersion != st.ResourceVersion {
		t.Fatalf("preconditions %+v, want UID %s RV %s", pre, st.UID, st.ResourceVersion)
	}
	if e.stored("fingerprint/abc") != nil {
		t.Fatal("lease still stored after release")
	}
	cause := context.Cause(lk.Context())
	if !errors.Is(cause, ErrReleased) || errors.Is(cause, ErrLost) {
		t.Errorf("cause after release = %v, want ErrReleased and not ErrLost", cause)
	}
	if !errors.Is(lk.Err(), ErrReleased) {
		t.Errorf("Err after release = %v", lk.Err())
	}
	if err := lk.Release(ctx); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	if e.calls("delete") != 1 {
		t.Errorf("second Release made API calls")
	}
}

func TestTryAcquireHeldByAnother(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")

	_, err := l.TryAcquire(context.Background(), "k")
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("err = %v, want ErrHeld", err)
	}
	if !strings.Contains(err.Error(), "pod-b/1") {
		t.Errorf("error %q does not name the holder", err)
	}
	if e.calls("create") != 1 || e.calls("get") != 1 || e.calls("update") != 0 {
		t.Fatalf("calls: %v", e.cs.Actions())
	}
	if *e.stored("k").Spec.HolderIdentity != "pod-b/1" {
		t.Fatal("lease changed")
	}
}

func TestAcquireAPIErrors(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		check func(error) bool
	}{
		{"api down", errors.New("dial tcp 10.0.0.1:443: connect: connection refused"), func(err error) bool {
			return strings.Contains(err.Error(), "connection refused")
		}},
		{"forbidden", apierrors.NewForbidden(leasesGR, "x", errors.New("RBAC")), apierrors.IsForbidden},
		{"server timeout", apierrors.NewServerTimeout(leasesGR, "create", 1), apierrors.IsServerTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cs.PrependReactor("*", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.err
			})
			l := e.locker("pod-a")
			for _, acquire := range []func(context.Context, string) (*Lock, error){l.TryAcquire, l.Acquire} {
				_, err := acquire(context.Background(), "k")
				if err == nil || errors.Is(err, ErrHeld) {
					t.Fatalf("err = %v, want an API error that is not ErrHeld", err)
				}
				if !tc.check(err) {
					t.Errorf("error %v lost its type through the wrap", err)
				}
				if !strings.Contains(err.Error(), "acquire k: create lease "+LeaseName("gw-lock", "k")) {
					t.Errorf("error %q does not name the operation", err)
				}
			}
			// The key is not left locked locally after a failure.
			if queueLen(l, "k") != -1 {
				t.Errorf("slot left behind")
			}
		})
	}
}

func TestCreateRace(t *testing.T) {
	e := newEnv(t)
	l := e.locker("pod-a")
	// Another replica creates the Lease between our decision and our Create.
	e.cs.PrependReactor("create", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		if e.stored("k") == nil {
			e.foreign("k", "pod-b/1")
		}
		return false, nil, nil
	})
	_, err := l.TryAcquire(context.Background(), "k")
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("err = %v, want ErrHeld", err)
	}
	if e.calls("create") != 1 || e.calls("get") != 1 {
		t.Fatalf("calls %v", e.cs.Actions())
	}
}

func TestTakeoverConflictIsContention(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	ctx := context.Background()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("first sighting: %v", err)
	}
	e.clk.Step(30 * time.Second)
	// A third replica takes over just before our Update lands.
	e.cs.PrependReactor("update", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		e.foreign("k", "pod-c/1")
		return false, nil, nil
	})
	_, err := l.TryAcquire(ctx, "k")
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("err = %v, want ErrHeld", err)
	}
	if e.calls("update") != 1 {
		t.Fatalf("updates = %d", e.calls("update"))
	}
	if got := *e.stored("k").Spec.HolderIdentity; got != "pod-c/1" {
		t.Fatalf("holder = %s", got)
	}
}

func TestExpiredTakeoverAfterFullObservedDuration(t *testing.T) {
	e := newEnv(t)
	before := e.foreign("k", "pod-b/1")
	four := int32(4)
	before.Spec.LeaseTransitions = &four
	before = e.srv.Put(before)
	l := e.locker("pod-a")
	ctx := context.Background()

	// The remote renewTime is an hour old; that must not matter.
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("first sighting: %v", err)
	}
	e.clk.Step(30*time.Second - time.Nanosecond)
	e.cs.ClearActions()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("1ns before expiry: %v", err)
	}
	if e.calls("get") != 1 || e.totalCalls() != 1 {
		t.Fatalf("second look should be one Get: %v", e.cs.Actions())
	}
	e.clk.Step(time.Nanosecond)
	e.cs.ClearActions()
	lk, err := l.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatalf("at expiry: %v", err)
	}
	defer lk.Release(ctx)
	if e.calls("get") != 1 || e.calls("update") != 1 || e.totalCalls() != 2 {
		t.Fatalf("takeover should be Get + Update: %v", e.cs.Actions())
	}
	st := e.stored("k")
	now := e.clk.Now()
	if *st.Spec.HolderIdentity != lk.Holder() || *st.Spec.LeaseTransitions != 5 ||
		!st.Spec.AcquireTime.Time.Equal(now) || !st.Spec.RenewTime.Time.Equal(now) || *st.Spec.LeaseDurationSeconds != 30 {
		t.Fatalf("takeover bookkeeping: %+v", st.Spec)
	}
	if st.UID != before.UID {
		t.Fatal("takeover must update, not recreate")
	}
	if mustCompare(t, lk.Token(), Token{rv: before.ResourceVersion}) <= 0 {
		t.Fatal("token did not increase over the previous holder's write")
	}
}

func TestLeaseWithMissingFieldsExpires(t *testing.T) {
	e := newEnv(t)
	bare := e.foreign("k", "x")
	bare.Spec = coordinationv1.LeaseSpec{} // no holder, duration, times or transitions
	e.srv.Put(bare)
	l := e.locker("pod-a")
	ctx := context.Background()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("first sighting: %v", err)
	}
	e.clk.Step(30*time.Second - time.Nanosecond) // the Locker's own LeaseDuration applies
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("before expiry: %v", err)
	}
	e.clk.Step(time.Nanosecond)
	lk, err := l.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatalf("a Lease with missing fields never expired: %v", err)
	}
	defer lk.Release(ctx)
	st := e.stored("k")
	if *st.Spec.LeaseTransitions != 1 || *st.Spec.HolderIdentity != lk.Holder() || st.Spec.AcquireTime == nil {
		t.Fatalf("spec %+v", st.Spec)
	}
}

func TestObservationRestartsOnChange(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	ctx := context.Background()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatal(err)
	}
	e.clk.Step(20 * time.Second)
	e.foreign("k", "pod-b/1") // the holder renews: a new resourceVersion
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatal(err)
	}
	e.clk.Step(29 * time.Second) // 49s after the first sighting, 29s after the change
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("taken over before a full duration of no change: %v", err)
	}
	e.clk.Step(time.Second)
	lk, err := l.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatalf("after a full duration of no change: %v", err)
	}
	lk.Release(ctx)
}

func TestAcquireWakesOnRemoteRelease(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	type res struct {
		lk  *Lock
		err error
	}
	done := make(chan res, 1)
	go func() {
		lk, err := l.Acquire(context.Background(), "k")
		done <- res{lk, err}
	}()
	eventually(t, "watch", func() bool { return e.calls("watch") == 1 })
	// No clock step: the Deleted event alone must wake the waiter.
	e.srv.Delete(testNS, LeaseName("gw-lock", "k"))
	r := <-done
	if r.err != nil {
		t.Fatalf("Acquire: %v", r.err)
	}
	defer r.lk.Release(context.Background())
	if e.calls("create") != 2 {
		t.Fatalf("want create (AlreadyExists), wait, create: %v", e.cs.Actions())
	}
}

func TestAcquireTakesOverAtObservedExpiry(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	done := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(context.Background(), "k")
		if err == nil {
			err = lk.Release(context.Background())
		}
		done <- err
	}()
	eventually(t, "watch", func() bool { return e.calls("watch") == 1 })
	e.waitersAtLeast(1)
	e.clk.Step(30*time.Second - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("returned before expiry: %v", err)
	default:
	}
	if e.calls("update") != 0 {
		t.Fatal("takeover attempted before expiry")
	}
	e.clk.Step(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.calls("update") != 1 {
		t.Fatalf("calls %v", e.cs.Actions())
	}
}

func TestAcquireContextEndsWhileWaitingRemotely(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, "k")
		done <- err
	}()
	eventually(t, "watch", func() bool { return e.calls("watch") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if queueLen(l, "k") != -1 {
		t.Fatal("slot left behind")
	}
}

func TestLockDelay(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l := e.locker("pod-a", func(o *Options) { o.LockDelay = 5 * time.Second })
	ctx := context.Background()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatal(err)
	}
	e.clk.Step(30 * time.Second)
	done := make(chan error, 1)
	go func() {
		lk, err := l.TryAcquire(ctx, "k")
		if err == nil {
			err = lk.Release(ctx)
		}
		done <- err
	}()
	eventually(t, "takeover", func() bool { return e.calls("update") == 1 })
	e.waitersAtLeast(3) // renewer (2) + lock delay
	e.clk.Step(5*time.Second - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("returned during lock delay: %v", err)
	default:
	}
	e.clk.Step(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestClockSkewChangesNothing(t *testing.T) {
	e := newEnv(t)
	ahead := &skewedClock{FakeClock: e.clk, skew: 10 * time.Minute}
	skewed := e.locker("pod-skewed", func(o *Options) { o.Clock = ahead })
	normal := e.locker("pod-normal")
	ctx := context.Background()

	// The skewed Locker's Lease carries renewTimes 10 minutes in the future.
	mine, err := skewed.TryAcquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Release(ctx)
	if got := e.stored("a").Spec.RenewTime.Time; !got.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("renewTime %v", got)
	}
	// The normal Locker holds "b"; its renewTime looks 10 minutes old to the skewed one.
	theirs, err := normal.TryAcquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Release(ctx)

	for i := 0; i < 6; i++ { // a minute of renewals, 10s apart
		if _, err := skewed.TryAcquire(ctx, "b"); !errors.Is(err, ErrHeld) {
			t.Fatalf("skewed Locker took a live lease: %v", err)
		}
		if _, err := normal.TryAcquire(ctx, "a"); !errors.Is(err, ErrHeld) {
			t.Fatalf("live lease of the skewed Locker taken: %v", err)
		}
		renewals := e.calls("update")
		e.waitersAtLeast(4)
		e.clk.Step(10 * time.Second)
		eventually(t, "renewals", func() bool { return e.calls("update") >= renewals+2 })
		eventually(t, "renewals applied", func() bool { return e.clk.Waiters() >= 4 })
	}
	if mine.Err() != nil || theirs.Err() != nil {
		t.Fatalf("locks lost: %v / %v", mine.Err(), theirs.Err())
	}
}

// skewedClock reads a fixed offset ahead of the fake clock; its timers are
// the fake clock's.
type skewedClock struct {
	*clocktesting.FakeClock
	skew time.Duration
}

func (c *skewedClock) Now() time.Time                  { return c.FakeClock.Now().Add(c.skew) }
func (c *skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
