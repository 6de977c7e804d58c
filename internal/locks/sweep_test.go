package locks_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/internal/locks"
	"github.com/leasehold/leasehold/lease"
)

var leasesGR = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func newSweeper(t *testing.T, api *fakeAPI, opts locks.SweepOptions) *locks.Sweeper {
	t.Helper()
	s, err := locks.NewSweeper(api.leases, opts)
	if err != nil {
		t.Fatalf("NewSweeper: %v", err)
	}
	return s
}

// TestSweepDecisions watches six Leases for the idle time while the test
// plays the rest of the world: only the one nobody touched, and whose own
// duration the watch covered, is deleted, with the preconditions it was
// first read with.
func TestSweepDecisions(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	const idle = time.Minute
	stale := api.create(t, stamped("ro-lock", "stale", "o-dead/1", 30, t0.Add(-time.Hour), t0.Add(-time.Hour), 0))
	renewed := api.create(t, stamped("ro-lock", "renewed", "o-live/2", 30, t0, t0, 0))
	gone := api.create(t, stamped("gw-lock", "gone", "g-0/3", 30, t0, t0, 0))
	recreated := api.create(t, stamped("gw-lock", "recreated", "g-0/4", 30, t0, t0, 0))
	long := api.create(t, stamped("gw-lock", "long", "g-0/5", 120, t0, t0, 0)) // declares more than the watch
	notOurs := api.create(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager", Namespace: ns}})

	var watched int
	var watchedFor time.Duration
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{
		Idle:    idle,
		Clock:   clk,
		OnWatch: func(n int, d time.Duration) { watched, watchedFor = n, d },
	}))
	waitForTimer(t, clk)
	api.renew(t, renewed.Name, t0.Add(10*time.Second))
	api.remove(t, gone.Name)
	api.remove(t, recreated.Name)
	api.create(t, stamped("gw-lock", "recreated", "g-1/6", 30, t0, t0, 0))
	late := api.create(t, stamped("gw-lock", "late", "g-0/7", 30, t0, t0, 0)) // not in the first listing
	clk.Step(idle)
	r := result(t, done)
	if r.err != nil {
		t.Fatalf("Sweep: %v", r.err)
	}

	if got, want := decisions(r.rep.Deleted), []string{"idle:stale"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	wantKept := []string{"long-duration:long", "changed:recreated", "gone:gone", "changed:renewed"}
	if got := decisions(r.rep.Kept); !slices.Equal(sorted(got), sorted(wantKept)) {
		t.Errorf("kept %v, want %v", got, wantKept)
	}
	if r.rep.Found != 5 || r.rep.Watched != 5 || r.rep.Idle != idle || r.rep.Elapsed != idle || watched != 5 || watchedFor != idle {
		t.Errorf("report found=%d watched=%d idle=%v elapsed=%v, OnWatch(%d, %v); want 5, 5, %v, %v, (5, %v)",
			r.rep.Found, r.rep.Watched, r.rep.Idle, r.rep.Elapsed, watched, watchedFor, idle, idle, idle)
	}

	if api.get(t, stale.Name) != nil {
		t.Error("the stale Lease is still there")
	}
	for _, l := range []*coordinationv1.Lease{renewed, long, notOurs, late} {
		if api.get(t, l.Name) == nil {
			t.Errorf("Lease %s was deleted", l.Name)
		}
	}
	if got := api.get(t, recreated.Name); got == nil || got.UID == recreated.UID {
		t.Errorf("the recreated Lease: %v", got)
	}
	dels := api.deletes()
	// Three are the test's own (gone, recreated); one is the sweep's.
	var sweeps []clienttesting.DeleteAction
	for _, d := range dels {
		if d.GetDeleteOptions().Preconditions != nil {
			sweeps = append(sweeps, d)
		}
	}
	if len(sweeps) != 1 {
		t.Fatalf("%d conditional deletes, want 1", len(sweeps))
	}
	p := sweeps[0].GetDeleteOptions().Preconditions
	if sweeps[0].GetName() != stale.Name || p.UID == nil || *p.UID != stale.UID || p.ResourceVersion == nil || *p.ResourceVersion != stale.ResourceVersion {
		t.Errorf("delete of %s with preconditions %+v, want %s uid=%s rv=%s", sweeps[0].GetName(), p, stale.Name, stale.UID, stale.ResourceVersion)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestSweepWaitsTheWholeIdleTime: one tick short of the idle time nothing
// is deleted and the sweep is still waiting.
func TestSweepWaitsTheWholeIdleTime(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	l := api.create(t, stamped("ro-lock", "stale", "o-dead/1", 30, t0, t0, 0))
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{Idle: 45 * time.Second, Clock: clk}))
	waitForTimer(t, clk)
	clk.Step(45*time.Second - time.Nanosecond)
	select {
	case r := <-done:
		t.Fatalf("Sweep returned before the idle time: %+v, %v", r.rep, r.err)
	default:
	}
	if api.get(t, l.Name) == nil || len(api.deletes()) != 0 {
		t.Fatal("deleted before the idle time")
	}
	clk.Step(time.Nanosecond)
	if r := result(t, done); r.err != nil || len(r.rep.Deleted) != 1 {
		t.Fatalf("Sweep = %+v, %v; want the Lease deleted", r.rep, r.err)
	}
	if api.get(t, l.Name) != nil {
		t.Error("the Lease is still there")
	}
}

// TestSweepDefaultIdle: twice the longest declared duration, at least 30s.
func TestSweepDefaultIdle(t *testing.T) {
	for name, tc := range map[string]struct {
		durations []int32 // 0: the field is missing
		want      time.Duration
	}{
		"twice the longest":      {[]int32{10, 45, 20}, 90 * time.Second},
		"at least 30s":           {[]int32{5, 1}, 30 * time.Second},
		"missing counts as 30s":  {[]int32{0, 5}, 60 * time.Second},
		"one hour-long duration": {[]int32{3600}, 2 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			api := newFakeAPI()
			clk := clocktesting.NewFakeClock(t0)
			for i, d := range tc.durations {
				l := stamped("ro-lock", string(rune('a'+i)), "o/1", d, t0, t0, 0)
				if d == 0 {
					l.Spec.LeaseDurationSeconds = nil
				}
				api.create(t, l)
			}
			var onWatch time.Duration
			done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{
				Clock: clk, OnWatch: func(_ int, d time.Duration) { onWatch = d },
			}))
			waitForTimer(t, clk)
			clk.Step(tc.want - time.Nanosecond)
			select {
			case r := <-done:
				t.Fatalf("Sweep returned before %v: idle %v", tc.want, r.rep.Idle)
			default:
			}
			clk.Step(time.Nanosecond)
			r := result(t, done)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.rep.Idle != tc.want || onWatch != tc.want {
				t.Errorf("idle %v (OnWatch %v), want %v", r.rep.Idle, onWatch, tc.want)
			}
			if len(r.rep.Deleted) != len(tc.durations) {
				t.Errorf("deleted %v, want all %d", decisions(r.rep.Deleted), len(tc.durations))
			}
		})
	}
}

func TestSweepDryRunDeletesNothing(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	stale := api.create(t, stamped("ro-lock", "stale", "o-dead/1", 30, t0.Add(-3*time.Hour), t0.Add(-3*time.Hour), 0))
	old := api.create(t, stamped("ro-lock", "old", "o-dead/2", 30, t0.Add(-2*time.Hour), t0.Add(-2*time.Hour), 0))
	renewed := api.create(t, stamped("ro-lock", "renewed", "o-live/3", 30, t0, t0, 0))
	// With OlderThan 150m only "stale" qualifies by age; "old" qualifies by
	// the watch.
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{
		Idle: time.Minute, OlderThan: 150 * time.Minute, DryRun: true, Clock: clk,
	}))
	waitForTimer(t, clk)
	api.renew(t, renewed.Name, t0.Add(time.Second))
	clk.Step(time.Minute)
	r := result(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.rep.DryRun {
		t.Error("report does not say dry run")
	}
	if got, want := decisions(r.rep.Deleted), []string{"older-than:stale", "idle:old"}; !slices.Equal(got, want) {
		t.Errorf("would delete %v, want %v", got, want)
	}
	if got, want := decisions(r.rep.Kept), []string{"changed:renewed"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if n := len(api.deletes()); n != 0 {
		t.Errorf("dry run sent %d deletes", n)
	}
	for _, l := range []*coordinationv1.Lease{stale, old, renewed} {
		if api.get(t, l.Name) == nil {
			t.Errorf("dry run deleted %s", l.Name)
		}
	}
}

func TestSweepRefusesOlderThanBelowAnHour(t *testing.T) {
	api := newFakeAPI()
	for _, d := range []time.Duration{time.Second, 30 * time.Minute, time.Hour - time.Nanosecond, -time.Hour} {
		if _, err := locks.NewSweeper(api.leases, locks.SweepOptions{OlderThan: d}); !errors.Is(err, locks.ErrInvalidOptions) {
			t.Errorf("OlderThan %v: NewSweeper error %v, want ErrInvalidOptions", d, err)
		}
	}
	if _, err := locks.NewSweeper(api.leases, locks.SweepOptions{OlderThan: time.Hour}); err != nil {
		t.Errorf("OlderThan 1h refused: %v", err)
	}
	for name, opts := range map[string]locks.SweepOptions{
		"negative idle": {Idle: -time.Second},
		"bad prefix":    {Prefix: "Not_A_Label"},
	} {
		if _, err := locks.NewSweeper(api.leases, opts); !errors.Is(err, locks.ErrInvalidOptions) {
			t.Errorf("%s: NewSweeper error %v, want ErrInvalidOptions", name, err)
		}
	}
	if _, err := locks.NewSweeper(nil, locks.SweepOptions{}); !errors.Is(err, locks.ErrInvalidOptions) {
		t.Errorf("nil client: %v", err)
	}
	if n := len(api.cs.Actions()); n != 0 {
		t.Errorf("%d API calls while validating", n)
	}
}

// TestSweepOlderThanDeletesWithoutWaiting: Leases last written longer ago
// than the threshold are gone before the watch starts; the others are
// still judged by the watch.
func TestSweepOlderThanDeletesWithoutWaiting(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	ancient := api.create(t, stamped("gw-lock", "ancient", "g-dead/1", 30, t0.Add(-48*time.Hour), t0.Add(-25*time.Hour), 0))
	// Acquired long ago but renewed recently: its age is its renewal's.
	busy := api.create(t, stamped("gw-lock", "busy", "g-live/2", 30, t0.Add(-48*time.Hour), t0.Add(-time.Second), 0))
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{
		Idle: time.Minute, OlderThan: 24 * time.Hour, Clock: clk,
	}))
	waitForTimer(t, clk)
	if api.get(t, ancient.Name) != nil {
		t.Error("the ancient Lease is still there when the watch starts")
	}
	api.renew(t, busy.Name, t0)
	clk.Step(time.Minute)
	r := result(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := decisions(r.rep.Deleted), []string{"older-than:ancient"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if got, want := decisions(r.rep.Kept), []string{"changed:busy"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if r.rep.Watched != 1 {
		t.Errorf("watched %d, want only the busy one", r.rep.Watched)
	}
	if api.get(t, busy.Name) == nil {
		t.Error("the busy Lease was deleted")
	}
}

// TestSweepOlderThanOnlyNeedsNoWait: when every Lease is past the
// threshold there is nothing to watch, and Sweep returns with the clock
// never stepped.
func TestSweepOlderThanOnlyNeedsNoWait(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	api.create(t, stamped("gw-lock", "a", "g-dead/1", 30, t0.Add(-3*time.Hour), t0.Add(-3*time.Hour), 0))
	api.create(t, stamped("ro-lock", "b", "o-dead/2", 30, t0.Add(-2*time.Hour), t0.Add(-2*time.Hour), 0))
	rep, err := newSweeper(t, api, locks.SweepOptions{OlderThan: time.Hour, Clock: clk}).Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := decisions(rep.Deleted), []string{"older-than:a", "older-than:b"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if rep.Watched != 0 || rep.Idle != 0 {
		t.Errorf("watched %d for %v, want nothing", rep.Watched, rep.Idle)
	}
}

func TestSweepNothingFound(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	called := false
	rep, err := newSweeper(t, api, locks.SweepOptions{Clock: clk, OnWatch: func(int, time.Duration) { called = true }}).Sweep(context.Background())
	if err != nil || rep.Found != 0 || called || clk.HasWaiters() {
		t.Errorf("Sweep of nothing: %+v, %v, OnWatch called %v", rep, err, called)
	}
}

func TestSweepPrefix(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	gw := api.create(t, stamped("gw-lock", "k", "g-dead/1", 30, t0, t0, 0))
	ro := api.create(t, stamped("ro-lock", "k", "o-dead/2", 30, t0, t0, 0))
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{Prefix: "ro-lock", Idle: time.Minute, Clock: clk}))
	waitForTimer(t, clk)
	clk.Step(time.Minute)
	if r := result(t, done); r.err != nil || r.rep.Found != 1 || len(r.rep.Deleted) != 1 {
		t.Fatalf("Sweep = %+v, %v; want the ro-lock Lease only", r.rep, r.err)
	}
	if api.get(t, ro.Name) != nil || api.get(t, gw.Name) == nil {
		t.Error("prefix not respected")
	}
}

// TestSweepDeleteOutcomes: a Lease that changes or vanishes between the
// second listing and the delete (the precondition catches it) is kept; any
// other delete failure is reported and does not stop the other deletes.
func TestSweepDeleteOutcomes(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	for _, key := range []string{"conflict", "notfound", "broken", "fine"} {
		api.create(t, stamped("ro-lock", key, "o-dead/1", 30, t0, t0, 0))
	}
	fail := map[string]error{
		lease.LeaseName("ro-lock", "conflict"): apierrors.NewConflict(leasesGR, "x", errors.New("precondition failed")),
		lease.LeaseName("ro-lock", "notfound"): apierrors.NewNotFound(leasesGR, "x"),
		lease.LeaseName("ro-lock", "broken"):   apierrors.NewInternalError(errors.New("etcd unhappy")),
	}
	api.cs.PrependReactor("delete", "leases", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if err, ok := fail[a.(clienttesting.DeleteAction).GetName()]; ok {
			return true, nil, err
		}
		return false, nil, nil
	})
	done := sweepAsync(context.Background(), newSweeper(t, api, locks.SweepOptions{Idle: time.Minute, Clock: clk}))
	waitForTimer(t, clk)
	clk.Step(time.Minute)
	r := result(t, done)
	if !apierrors.IsInternalError(r.err) {
		t.Errorf("Sweep error %v, want the internal error", r.err)
	}
	if got, want := decisions(r.rep.Deleted), []string{"idle:fine"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if got, want := sorted(decisions(r.rep.Kept)), []string{"changed:conflict", "gone:notfound"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}

// TestSweepInterrupted: cancelling during the watch deletes nothing by
// observation and says why.
func TestSweepInterrupted(t *testing.T) {
	api := newFakeAPI()
	clk := clocktesting.NewFakeClock(t0)
	l := api.create(t, stamped("ro-lock", "stale", "o-dead/1", 30, t0, t0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := sweepAsync(ctx, newSweeper(t, api, locks.SweepOptions{Idle: time.Minute, Clock: clk}))
	waitForTimer(t, clk)
	cancel()
	r := result(t, done)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Sweep error %v, want context.Canceled", r.err)
	}
	if len(r.rep.Deleted) != 0 || api.get(t, l.Name) == nil || len(api.deletes()) != 0 {
		t.Errorf("interrupted sweep deleted: %+v", r.rep)
	}
}
