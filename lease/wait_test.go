package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// constantBackoff makes the backoff delay exact, so a test can step the
// fake clock by it.
type constantBackoff time.Duration

func (c constantBackoff) Delay(int, time.Duration) time.Duration { return time.Duration(c) }

type acquired struct {
	lk  *Lock
	err error
}

func acquireAsync(ctx context.Context, l *Locker, key string) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		lk, err := l.Acquire(ctx, key)
		ch <- acquired{lk, err}
	}()
	return ch
}

// mustGet waits for an Acquire started by acquireAsync. The real-time
// limit only keeps a broken build from hanging; it proves nothing about
// timing.
func mustGet(t *testing.T, ch <-chan acquired) *Lock {
	t.Helper()
	var r acquired
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return")
	}
	if r.err != nil {
		t.Fatalf("Acquire: %v", r.err)
	}
	return r.lk
}

func returned(ch <-chan acquired) bool {
	select {
	case r := <-ch:
		if r.lk != nil {
			_ = r.lk.Release(context.Background())
		}
		return true
	default:
		return false
	}
}

// A Watch that never answers (a black-holed connection) must not hold
// Acquire past the observed expiry: its open is bounded by RequestTimeout
// and the waiter falls back to its timer.
func TestWatchOpenIsBoundedByRequestTimeout(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l, c := e.spiedLocker("pod-a", func(o *Options) {
		o.RequestTimeout = 20 * time.Millisecond // real time, like every request timeout
		o.Backoff = constantBackoff(time.Second)
	})
	c.onBefore("watch", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the watch open to time out", func() bool {
		return value(t, l.metrics.apiErrors.WithLabelValues("watch")) == 1 && e.clk.Waiters() >= 1
	})
	e.clk.Step(30 * time.Second)
	lk := mustGet(t, got)
	defer lk.Release(context.Background())
	if c.calls("update") != 1 || c.calls("watch") != 1 {
		t.Fatalf("want a takeover after one failed watch: %v", c.counts())
	}
}

// Time spent opening the watch counts against the wait: the observed
// expiry, fixed before the open, ends it.
func TestSlowWatchOpenCountsAgainstTheWait(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l, c := e.spiedLocker("pod-a")
	c.onBefore("watch", func(context.Context) error {
		e.clk.Step(20 * time.Second) // the open takes 20s of the 30s
		return nil
	})
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return c.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	e.clk.Step(10*time.Second - time.Nanosecond)
	if returned(got) {
		t.Fatal("took over before expiry")
	}
	e.clk.Step(time.Nanosecond)
	lk := mustGet(t, got)
	lk.Release(context.Background())
	if c.calls("update") != 1 {
		t.Fatalf("calls %v", c.counts())
	}
}

// A waiter keeps one watch while the remote holder renews; each renewal
// restarts the observation, and contention is counted once per call.
func TestWaiterKeepsOneWatchAcrossRenewals(t *testing.T) {
	const renewals = 5
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l, c := e.spiedLocker("pod-a")
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return c.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	for i := 1; i <= renewals; i++ {
		e.clk.Step(10 * time.Second)
		e.foreign("k", "pod-b/1") // a renewal: a new resourceVersion
		eventually(t, "the renewal seen", func() bool {
			return value(t, l.metrics.wakeups.WithLabelValues("changed")) == float64(i) && e.clk.Waiters() >= 1
		})
	}
	if c.calls("watch") != 1 || c.calls("get") != 1 || c.calls("create") != 1 || c.calls("update") != 0 {
		t.Fatalf("after %d renewals: %v, want create, get and one watch", renewals, c.counts())
	}
	e.clk.Step(30*time.Second - time.Nanosecond) // measured from the last renewal
	if returned(got) {
		t.Fatal("took over before a full duration after the last renewal")
	}
	e.clk.Step(time.Nanosecond)
	lk := mustGet(t, got)
	defer lk.Release(context.Background())
	if c.calls("watch") != 1 || c.calls("get") != 1 || c.calls("update") != 1 {
		t.Fatalf("calls %v", c.counts())
	}
	if n := value(t, l.metrics.contention.WithLabelValues("remote")); n != 1 {
		t.Errorf("remote contention = %v for one contended Acquire, want 1", n)
	}
	if n := value(t, l.metrics.wakeups.WithLabelValues("expired")); n != 1 {
		t.Errorf("expired wake-ups = %v, want 1", n)
	}
	opts := c.watchOptions(0)
	if opts.TimeoutSeconds == nil || *opts.TimeoutSeconds != int64(watchTimeout/time.Second) {
		t.Errorf("watch TimeoutSeconds = %v, want %v", opts.TimeoutSeconds, watchTimeout)
	}

	// TryAcquire counts once per call too.
	e.foreign("k2", "pod-b/1")
	for range 2 {
		if _, err := l.TryAcquire(context.Background(), "k2"); !errors.Is(err, ErrHeld) {
			t.Fatal(err)
		}
	}
	if n := value(t, l.metrics.contention.WithLabelValues("remote")); n != 3 {
		t.Errorf("remote contention = %v after two more refused calls, want 3", n)
	}
}

// After a wait that the healthy watch covered until the observed expiry,
// the takeover is one Update carrying the observed resourceVersion.
func TestTakeoverAfterWatchedExpiryIsOneUpdate(t *testing.T) {
	e := newEnv(t)
	st := e.foreign("k", "pod-b/1")
	l := e.locker("pod-a")
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return e.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	e.cs.ClearActions()
	e.clk.Step(30 * time.Second)
	lk := mustGet(t, got)
	defer lk.Release(context.Background())
	acts := e.cs.Actions()
	if len(acts) != 1 || acts[0].GetVerb() != "update" {
		t.Fatalf("takeover calls %v, want one update", acts)
	}
	if rv := acts[0].(clienttesting.UpdateAction).GetObject().(*coordinationv1.Lease).ResourceVersion; rv != st.ResourceVersion {
		t.Fatalf("takeover carried resourceVersion %s, want the observed %s", rv, st.ResourceVersion)
	}
}

// Events the watch delivers after a Get that overtook them are older than
// what the waiter knows and must not replace it.
func TestWatchEventsOlderThanTheObservationAreIgnored(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l, c := e.spiedLocker("pod-a")
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return c.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	// After the holder's Delete, another process creates and renews the
	// Lease just before the waiter's Create: the Get that follows the
	// AlreadyExists returns the renewal, and the watch still holds the
	// creation and the renewal.
	var latest *coordinationv1.Lease
	c.onBefore("create", func(context.Context) error {
		if e.stored("k") == nil {
			e.foreign("k", "pod-c/1")
			latest = e.foreign("k", "pod-c/1")
		}
		return nil
	})
	e.srv.Delete(testNS, LeaseName("gw-lock", "k"))
	eventually(t, "the lost Create and its Get", func() bool { return c.calls("get") == 2 && e.clk.Waiters() >= 1 })
	e.clk.Step(30 * time.Second)
	lk := mustGet(t, got)
	defer lk.Release(context.Background())
	if n := value(t, l.metrics.wakeups.WithLabelValues("changed")); n != 0 {
		t.Errorf("%v stale events taken as changes", n)
	}
	if c.calls("update") != 1 || c.calls("get") != 2 || c.calls("watch") != 1 {
		t.Fatalf("calls %v, want one takeover Update on the one watch", c.counts())
	}
	if mustCompare(t, lk.Token(), Token{rv: latest.ResourceVersion}) <= 0 {
		t.Fatal("token not above the renewal")
	}
}

// A watch the server closes (its timeout) is re-opened from the newest
// version at once, without a Get, and still wakes the waiter on Delete.
func TestWatchReopensAfterCloseWithoutGet(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	l, c := e.spiedLocker("pod-a")
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return c.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	first := c.watch(0)
	first.Stop() // closes the result channel, as a server's timeout does
	eventually(t, "the re-open", func() bool { return c.calls("watch") == 2 })
	e.srv.Delete(testNS, LeaseName("gw-lock", "k")) // no clock step: only the watch can wake it
	lk := mustGet(t, got)
	defer lk.Release(context.Background())
	if c.calls("get") != 1 || c.calls("create") != 2 || c.calls("watch") != 2 {
		t.Fatalf("calls %v", c.counts())
	}
	if n := value(t, l.metrics.apiErrors.WithLabelValues("watch")); n != 0 {
		t.Fatalf("a clean close counted as %v API errors", n)
	}
}

// recordingClock records the duration of every timer armed.
type recordingClock struct {
	*clocktesting.FakeClock
	mu     sync.Mutex
	timers []time.Duration
}

func (c *recordingClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	c.timers = append(c.timers, d)
	c.mu.Unlock()
	return c.FakeClock.NewTimer(d)
}

func (c *recordingClock) armed() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.timers...)
}

// A watch that fails (410 Gone) makes the state unknown: the waiter looks
// again with a Get after the backoff delay, and opens a new watch.
func TestBrokenWatchFallsBackToBackoff(t *testing.T) {
	e := newEnv(t)
	e.foreign("k", "pod-b/1")
	rc := &recordingClock{FakeClock: e.clk}
	l, c := e.spiedLocker("pod-a", func(o *Options) { o.Clock = rc; o.Backoff = constantBackoff(time.Second) })
	fw := watch.NewFakeWithChanSize(1, false)
	c.serveNextWatch(fw) // the first watch, which the test breaks
	got := acquireAsync(context.Background(), l, "k")
	eventually(t, "the wait", func() bool { return len(rc.armed()) == 1 })
	fw.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	eventually(t, "the backoff timer", func() bool { return len(rc.armed()) == 2 })
	if d := rc.armed()[1]; d != time.Second {
		t.Fatalf("after a broken watch the waiter sleeps %v, want the backoff delay 1s", d)
	}
	if c.calls("get") != 1 {
		t.Fatalf("calls %v", c.counts())
	}
	e.clk.Step(time.Second)
	eventually(t, "a Get and a new watch", func() bool { return c.calls("get") == 2 && c.calls("watch") == 2 })
	e.srv.Delete(testNS, LeaseName("gw-lock", "k"))
	lk := mustGet(t, got)
	lk.Release(context.Background())
}

// simulateFairnessRelease makes lk's Release behave like the one that hits
// the fairness bound: with hand-offs disabled it deletes the Lease and
// passes the slot to the next local waiter, marked as Release marks it.
func simulateFairnessRelease(t *testing.T, l *Locker, lk *Lock) {
	t.Helper()
	l.mu.Lock()
	l.slots[lk.Key()].yieldAfter = lk.Token().String()
	l.mu.Unlock()
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// heldWithRemoteWaiter has pod-a, with the given MaxLocalHandoffs, hold k
// while pod-b waits for it on a watch.
func heldWithRemoteWaiter(t *testing.T, maxLocalHandoffs int) (a *Locker, ac *spy, lk *Lock, remote <-chan acquired) {
	t.Helper()
	e := newEnv(t)
	a, ac = e.spiedLocker("pod-a", func(o *Options) { o.MaxLocalHandoffs = maxLocalHandoffs })
	b, bc := e.spiedLocker("pod-b")
	ctx := context.Background()
	lk, err := a.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	remote = acquireAsync(ctx, b, "k")
	eventually(t, "the remote waiter", func() bool { return bc.calls("watch") == 1 })
	return a, ac, lk, remote
}

// After a fairness release, a process that was watching the Lease gets the
// key; the local waiter yields, then waits for it like any contender.
func TestFairnessYieldLetsAWatchingProcessIn(t *testing.T) {
	a, ac, lk, remote := heldWithRemoteWaiter(t, -1)
	ctx := context.Background()
	local := acquireAsync(ctx, a, "k")
	eventually(t, "the local waiter", func() bool { return queueLen(a, "k") == 1 })

	simulateFairnessRelease(t, a, lk)
	// The fake clock never moves: the yield window cannot end, so the
	// remote process must get the key, and the local waiter must not even
	// try to create it.
	bl := mustGet(t, remote)
	eventually(t, "the local waiter to see the remote holder", func() bool {
		return value(t, a.metrics.contention.WithLabelValues("remote")) == 1
	})
	if ac.calls("create") != 1 || ac.calls("watch") != 1 || ac.calls("get") != 0 {
		t.Fatalf("local waiter calls during the yield %v, want only a watch", ac.counts())
	}
	if returned(local) {
		t.Fatal("local waiter acquired while the remote process holds the key")
	}
	if err := bl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wl := mustGet(t, local)
	defer wl.Release(ctx)
	if mustCompare(t, wl.Token(), bl.Token()) <= 0 {
		t.Fatal("token order")
	}
	if ac.calls("create") != 2 || ac.calls("watch") != 1 || ac.calls("get") != 0 {
		t.Fatalf("local waiter calls %v, want one watch and one Create after the remote release", ac.counts())
	}
}

// The same through Release itself: after MaxLocalHandoffs hand-offs the
// Lease is deleted, and the process that was watching it gets the turn
// (the review saw it win only about half of the time).
func TestFairnessBoundGivesAWatchingProcessTheTurn(t *testing.T) {
	a, ac, lk, remote := heldWithRemoteWaiter(t, 1)
	ctx := context.Background()
	first := acquireAsync(ctx, a, "k")
	eventually(t, "the first local waiter", func() bool { return queueLen(a, "k") == 1 })
	second := acquireAsync(ctx, a, "k")
	eventually(t, "the second local waiter", func() bool { return queueLen(a, "k") == 2 })

	if err := lk.Release(ctx); err != nil { // hand-off 1: the bound
		t.Fatal(err)
	}
	l1 := mustGet(t, first)
	if err := l1.Release(ctx); err != nil { // the bound reached: Delete
		t.Fatal(err)
	}
	bl := mustGet(t, remote)
	eventually(t, "the local waiter to see the remote holder", func() bool {
		return value(t, a.metrics.contention.WithLabelValues("remote")) == 1
	})
	if returned(second) || ac.calls("create") != 1 {
		t.Fatalf("local waiter competed during the yield: %v", ac.counts())
	}
	if err := bl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := mustGet(t, second)
	defer l2.Release(ctx)
	if mustCompare(t, l2.Token(), bl.Token()) <= 0 {
		t.Fatal("token order")
	}
}

// With nobody else interested, the local waiter creates the Lease once the
// yield window has passed on the Locker's clock.
func TestFairnessYieldCreatesAfterTheWindow(t *testing.T) {
	e := newEnv(t)
	a, ac := e.spiedLocker("pod-a", func(o *Options) { o.MaxLocalHandoffs = -1 })
	ctx := context.Background()
	lk, err := a.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	local := acquireAsync(ctx, a, "k")
	eventually(t, "the local waiter", func() bool { return queueLen(a, "k") == 1 })
	simulateFairnessRelease(t, a, lk)
	eventually(t, "the yield", func() bool { return ac.calls("watch") == 1 && e.clk.Waiters() >= 1 })
	e.clk.Step(yieldWindow - time.Nanosecond)
	if returned(local) || ac.calls("create") != 1 {
		t.Fatalf("created during the yield window: %v", ac.counts())
	}
	e.clk.Step(time.Nanosecond)
	wl := mustGet(t, local)
	defer wl.Release(ctx)
	if ac.calls("create") != 2 || ac.calls("get") != 0 {
		t.Fatalf("calls %v", ac.counts())
	}
}

// A key created and deleted as fast as the waiter looks at it
// (Create -> AlreadyExists -> Get -> NotFound) is retried on the backoff
// policy, not in a hot loop; TryAcquire gives up after maxTryRounds.
func TestChurningKeyIsSpacedByBackoff(t *testing.T) {
	e := newEnv(t)
	e.cs.PrependReactor("create", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewAlreadyExists(leasesGR, "x")
	})
	e.cs.PrependReactor("get", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(leasesGR, "x")
	})
	l := e.locker("pod-a", func(o *Options) { o.Backoff = constantBackoff(time.Second) })

	if _, err := l.TryAcquire(context.Background(), "t"); !errors.Is(err, ErrHeld) {
		t.Fatalf("TryAcquire = %v, want ErrHeld", err)
	}
	if e.calls("create") != maxTryRounds || e.calls("get") != maxTryRounds-1 {
		t.Fatalf("TryAcquire calls %v", e.cs.Actions())
	}
	e.cs.ClearActions()

	ctx, cancel := context.WithCancel(context.Background())
	got := acquireAsync(ctx, l, "k")
	eventually(t, "the first backoff", func() bool { return e.clk.Waiters() >= 1 })
	if e.calls("create") != 1 || e.calls("get") != 1 {
		t.Fatalf("calls before the first delay %v", e.cs.Actions())
	}
	e.clk.Step(time.Second)
	eventually(t, "the second round", func() bool { return e.calls("get") == 2 && e.clk.Waiters() >= 1 })
	if e.calls("create") != 2 {
		t.Fatalf("calls %v", e.cs.Actions())
	}
	cancel()
	if _, err := l.Acquire(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire after cancel = %v", err)
	}
	if r := <-got; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", r.err)
	}
}

func TestNewerThan(t *testing.T) {
	lease := func(rv string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}}
	}
	tests := []struct {
		name    string
		ev      watch.Event
		rv      string
		changed bool
		gone    bool
	}{
		{"newer modification", watch.Event{Type: watch.Modified, Object: lease("20")}, "19", true, false},
		{"same version", watch.Event{Type: watch.Modified, Object: lease("19")}, "19", false, false},
		{"older addition", watch.Event{Type: watch.Added, Object: lease("9")}, "19", false, false},
		{"longer is newer", watch.Event{Type: watch.Added, Object: lease("100")}, "99", true, false},
		{"newer deletion", watch.Event{Type: watch.Deleted, Object: lease("21")}, "19", true, true},
		{"older deletion", watch.Event{Type: watch.Deleted, Object: lease("18")}, "19", false, false},
		{"bookmark", watch.Event{Type: watch.Bookmark, Object: lease("30")}, "19", false, false},
		{"not a lease", watch.Event{Type: watch.Modified, Object: &metav1.Status{}}, "19", false, false},
		{"incomparable differs", watch.Event{Type: watch.Modified, Object: lease("x")}, "19", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next, changed := newerThan(tc.ev, tc.rv)
			if changed != tc.changed || (changed && (next == nil) != tc.gone) {
				t.Fatalf("newerThan = %v, %v; want changed %v, gone %v", next, changed, tc.changed, tc.gone)
			}
		})
	}
}
