package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// receive returns the result of a call that must end without any more
// help from the test. The bound only keeps a broken build from hanging;
// it proves nothing about timing.
func receive(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// frozenTimers is a clock whose time is the test's fake clock but whose
// timers never fire: it stands for a process that resumes from a pause
// before its renewer has had a chance to run.
type frozenTimers struct {
	*clocktesting.FakeClock
	frozen *clocktesting.FakeClock
}

func (c frozenTimers) NewTimer(d time.Duration) clock.Timer { return c.frozen.NewTimer(d) }

// Two Releases (or a Release and Close) of a lock found past its safe
// deadline must end it once: the loss is recorded while the first Release
// is still in charge, so the other waits for it instead of releasing a
// second time (which closed the released channel twice and panicked).
func TestConcurrentReleasesPastTheSafeDeadline(t *testing.T) {
	for i := 0; i < 500; i++ {
		e := newEnv(t)
		clk := frozenTimers{FakeClock: e.clk, frozen: clocktesting.NewFakeClock(t0)}
		l, err := New(e.api, Options{Namespace: testNS, Identity: "pod-a", Prefix: "gw-lock", Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		lk, err := l.TryAcquire(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		e.clk.Step(time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		start := make(chan struct{})
		for j := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if j == 2 {
					errs[j] = l.Close()
					return
				}
				errs[j] = lk.Release(context.Background())
			}()
		}
		close(start)
		wg.Wait()
		for j, err := range errs[:2] {
			if !errors.Is(err, ErrLost) {
				t.Fatalf("run %d: Release %d = %v, want ErrLost", i, j, err)
			}
		}
		if errs[2] != nil {
			t.Fatalf("run %d: Close = %v (ErrLost is not a Close error)", i, errs[2])
		}
		if !errors.Is(context.Cause(lk.Context()), ErrLost) {
			t.Fatalf("run %d: cause = %v", i, context.Cause(lk.Context()))
		}
		if e.calls("delete") != 0 || e.stored("k") == nil {
			t.Fatalf("run %d: a lock past its safe deadline touched the Lease", i)
		}
	}
}

// renewalInFlight holds k through a Locker whose requests time out after
// 17s of real time (the most New allows for a 30s lease, and longer than
// any of these tests runs) and its release after releaseTimeout, with the
// first renewal sent and hanging.
func renewalInFlight(t *testing.T, releaseTimeout time.Duration) (e *env, l *Locker, lk *Lock, entered func() int) {
	t.Helper()
	e, l, lk = holding(t, func(o *Options) { o.RequestTimeout = 17 * time.Second; o.ReleaseTimeout = releaseTimeout })
	entered, unblock := e.hangUpdates()
	t.Cleanup(unblock)
	e.renewerArmed(l)
	e.clk.Step(10 * time.Second)
	eventually(t, "renewal in flight", func() bool { return entered() == 1 })
	return e, l, lk, entered
}

// A renewal that hangs while Release waits for it must not hold back the
// loss: at the safe deadline Context is cancelled with ErrLost, and the
// waiting Release reports ErrLost without deleting anything. So does a
// second Release that waited for the first (it used to return nil).
func TestSafeDeadlinePassesWhileReleaseWaitsForHungRenewal(t *testing.T) {
	for _, via := range []string{"Release", "two Releases", "Close"} {
		t.Run(via, func(t *testing.T) {
			// Requests and the release hang for longer than the test runs:
			// only the safe deadline, on the fake clock, can end the wait.
			e, l, lk, entered := renewalInFlight(t, time.Hour)
			done := make(chan error, 2)
			go func() {
				if via == "Close" {
					done <- l.Close()
					return
				}
				done <- lk.Release(context.Background())
			}()
			if via == "two Releases" {
				go func() { done <- lk.Release(context.Background()) }()
			}
			eventually(t, "renewer stopped", func() bool {
				select {
				case <-lk.stop:
					return true
				default:
					return false
				}
			})
			e.clk.SetTime(t0.Add(27 * time.Second)) // the safe deadline
			err := receive(t, done, via)
			if via != "Close" && !errors.Is(err, ErrLost) {
				t.Fatalf("Release = %v, want ErrLost", err)
			}
			if via == "two Releases" {
				if err := receive(t, done, "second Release"); !errors.Is(err, ErrLost) {
					t.Fatalf("second Release = %v, want ErrLost", err)
				}
			}
			if via == "Close" && err != nil {
				t.Fatalf("Close = %v", err)
			}
			if !errors.Is(context.Cause(lk.Context()), ErrLost) {
				t.Fatalf("cause = %v, want ErrLost", context.Cause(lk.Context()))
			}
			if e.calls("delete") != 0 || e.calls("update") != 0 || entered() != 1 {
				t.Fatalf("a lost lock wrote: %v", e.cs.Actions())
			}
		})
	}
}

// Release gives up on a renewal in flight once ReleaseTimeout has passed,
// instead of waiting for the renewal's own RequestTimeout.
func TestReleaseIsBoundedByReleaseTimeout(t *testing.T) {
	e, l, lk, _ := renewalInFlight(t, 10*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- lk.Release(context.Background()) }()
	err := receive(t, done, "Release")
	if err == nil || errors.Is(err, ErrLost) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Release = %v, want a timeout", err)
	}
	if !errors.Is(context.Cause(lk.Context()), ErrReleased) {
		t.Fatalf("cause = %v, want ErrReleased", context.Cause(lk.Context()))
	}
	if e.calls("delete") != 0 {
		t.Fatal("Release deleted after abandoning a renewal whose outcome is unknown")
	}
	// The key is free for the next local acquisition, which finds the
	// Lease still there and waits for it like any remote contender.
	if _, err := l.TryAcquire(context.Background(), "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("TryAcquire = %v, want ErrHeld from the leftover Lease", err)
	}
}

// Close waits for a Release the user started and that is still deleting:
// after Close returns, no Locker call is in flight.
func TestCloseWaitsForReleaseInProgress(t *testing.T) {
	e := newEnv(t)
	l, api := e.spiedLocker("pod-a")
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	entered, unblock := api.blockDeletes()
	released := make(chan error, 1)
	go func() { released <- lk.Release(context.Background()) }()
	<-entered
	l.mu.Lock()
	active := l.active
	l.mu.Unlock()
	if active != 1 {
		t.Fatalf("active = %d while a Release is deleting, want 1 (Close must wait for it)", active)
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	unblock()
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case err := <-released:
		if err != nil {
			t.Fatalf("Release = %v", err)
		}
	default:
		t.Fatal("Close returned before the Release in progress")
	}
	if e.stored("k") != nil {
		t.Fatal("Lease still there after Close")
	}
}

// handoffSetup holds k through a Locker whose Updates can lose their
// response, with one local waiter queued.
func handoffSetup(t *testing.T) (*env, *spy, *Locker, *Lock, chan *Lock) {
	e := newEnv(t)
	l, api := e.spiedLocker("pod-a")
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	return e, api, l, lk, queue(t, l, "k", 1)[0]
}

// A renewal whose response was lost still moved the Lease on; the hand-off
// Update then gets Conflict. Release must recognise its own write and hand
// off with the current resourceVersion, not report a false ErrLost and
// leave the waiter to wait a whole duration.
func TestHandoffAfterRenewalWithLostResponse(t *testing.T) {
	e, api, l, lk, next := handoffSetup(t)
	e.renewerArmed(l)
	ackPending := api.loseNextUpdateAck()
	e.clk.Step(10 * time.Second)
	eventually(t, "renewal landed unseen", func() bool { return e.calls("update") == 1 && !ackPending() })
	before := e.stored("k")
	e.cs.ClearActions()
	if err := lk.Release(context.Background()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	w := <-next // granted by the hand-off before Release returned
	defer w.Release(context.Background())
	verbs := []string{}
	for _, a := range e.cs.Actions() {
		verbs = append(verbs, a.GetVerb())
	}
	if len(verbs) != 3 || verbs[0] != "update" || verbs[1] != "get" || verbs[2] != "update" {
		t.Fatalf("calls = %v, want update (conflict), get, update", verbs)
	}
	st := e.stored("k")
	if *st.Spec.HolderIdentity != w.Holder() || w.Token().String() != st.ResourceVersion || st.UID != before.UID {
		t.Fatalf("hand-off not written: holder %q token %v, stored %+v", w.Holder(), w.Token(), st)
	}
	if mustCompare(t, w.Token(), lk.Token()) <= 0 || *st.Spec.LeaseTransitions != *before.Spec.LeaseTransitions+1 {
		t.Fatalf("hand-off bookkeeping: token %v after %v, transitions %d", w.Token(), lk.Token(), *st.Spec.LeaseTransitions)
	}
	if w.Err() != nil {
		t.Fatal(w.Err())
	}
}

// A hand-off Update that landed but whose response was lost is a hand-off:
// the waiter gets the lock, with the token of that write.
func TestHandoffWithLostResponseLanded(t *testing.T) {
	e, api, _, lk, next := handoffSetup(t)
	api.loseNextUpdateAck()
	if err := lk.Release(context.Background()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	w := <-next
	defer w.Release(context.Background())
	st := e.stored("k")
	if *st.Spec.HolderIdentity != w.Holder() || w.Token().String() != st.ResourceVersion {
		t.Fatalf("waiter holds %q/%v, stored %q/%s", w.Holder(), w.Token(), *st.Spec.HolderIdentity, st.ResourceVersion)
	}
	if e.calls("delete") != 0 {
		t.Fatal("a hand-off that landed was followed by a Delete")
	}
}

// A hand-off that landed, whose response was lost and whose read-back
// failed, makes Release fall back to a Delete, which meets the hand-off
// (Conflict) and reads back our own hand-off holder id. Nobody else ever
// held the Lease: the hand-off stands, the waiter gets the lock with the
// token of that write, and Release, Err and the cause of Context say
// ErrReleased, never ErrLost.
func TestHandoffLandedUnseenThenDeleteConflictIsAHandoff(t *testing.T) {
	e, api, _, lk, next := handoffSetup(t)
	before := e.stored("k")
	api.loseNextUpdateAck()
	var gets atomic.Int32
	api.onBefore("get", func(context.Context) error {
		if gets.Add(1) == 1 {
			return errors.New("connection refused")
		}
		return nil
	})
	e.cs.ClearActions()
	if err := lk.Release(context.Background()); err != nil {
		t.Fatalf("Release = %v, want nil: the Lease holds our own hand-off", err)
	}
	if err := lk.Err(); err != ErrReleased {
		t.Fatalf("Err = %v, want ErrReleased", err)
	}
	if cause := context.Cause(lk.Context()); !errors.Is(cause, ErrReleased) || errors.Is(cause, ErrLost) {
		t.Fatalf("cause = %v, want ErrReleased", cause)
	}
	// Granted by Release: the fake clock does not move, so a waiter left
	// to acquire remotely would wait for the Lease to expire.
	var w *Lock
	select {
	case w = <-next:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not granted the hand-off")
	}
	defer w.Release(context.Background())
	st := e.stored("k")
	if *st.Spec.HolderIdentity != w.Holder() || w.Token().String() != st.ResourceVersion || st.UID != before.UID {
		t.Fatalf("waiter holds %q/%v, stored %q/%s", w.Holder(), w.Token(), *st.Spec.HolderIdentity, st.ResourceVersion)
	}
	if mustCompare(t, w.Token(), lk.Token()) <= 0 {
		t.Fatalf("token %v not after %v", w.Token(), lk.Token())
	}
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	// At the server: the hand-off Update, the Delete that met it and the
	// Get that told (the first Get failed before reaching it).
	if gets.Load() != 2 || e.calls("update") != 1 || e.calls("delete") != 1 || e.calls("get") != 1 || e.calls("create") != 0 {
		t.Fatalf("%d Gets tried; at the server %d updates, %d deletes, %d gets, %d creates; want 2; 1, 1, 1, 0",
			gets.Load(), e.calls("update"), e.calls("delete"), e.calls("get"), e.calls("create"))
	}
}

// As above, but every read-back fails: Release cannot tell our hand-off
// from a takeover. It reports an error that says so, not ErrLost, and Err
// says ErrReleased. The waiter then acquires like a remote contender: it
// takes over the hand-off's Lease, which nobody renews, once it expires
// by observation.
func TestHandoffAndDeleteWithUnknownOutcomeIsNotLost(t *testing.T) {
	e, api, _, lk, next := handoffSetup(t)
	api.loseNextUpdateAck()
	// Only Release's two read-backs fail (after the hand-off, after the
	// Delete's Conflict). Release passes the key on before it returns, so
	// the waiter's own Get may come before this test could clear a hook
	// that failed every Get.
	var gets atomic.Int32
	api.onBefore("get", func(context.Context) error {
		if gets.Add(1) <= 2 {
			return errors.New("connection refused")
		}
		return nil
	})
	err := lk.Release(context.Background())
	if err == nil || errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v, want an error that is not ErrLost", err)
	}
	if err := lk.Err(); err != ErrReleased {
		t.Fatalf("Err = %v, want ErrReleased", err)
	}
	if cause := context.Cause(lk.Context()); errors.Is(cause, ErrLost) {
		t.Fatalf("cause = %v, want ErrReleased", cause)
	}
	eventually(t, "waiter watching", func() bool { return api.calls("watch") == 1 })
	e.waitersAtLeast(1)
	e.clk.Step(30 * time.Second)
	w := <-next
	if err := w.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A hand-off that finds another holder in the Lease is a real loss: Release
// reports ErrLost, and the waiter acquires like a remote contender.
func TestHandoffFindingAnotherHolderIsLost(t *testing.T) {
	e, _, _, lk, next := handoffSetup(t)
	e.foreign("k", "pod-b/1")
	if err := lk.Release(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v, want ErrLost", err)
	}
	if *e.stored("k").Spec.HolderIdentity != "pod-b/1" {
		t.Fatal("hand-off overwrote another holder")
	}
	// The waiter now waits for pod-b's Lease (observed from now on).
	e.waitersAtLeast(1)
	e.clk.Step(30 * time.Second)
	w := <-next
	if err := w.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A slow acquisition must not push the first renewal back: it is due
// RenewInterval after the acquiring write was sent, and at once if the
// acquisition took longer than that.
func TestFirstRenewalIsTimedFromTheAcquiringWrite(t *testing.T) {
	for _, tc := range []struct {
		name          string
		createTook    time.Duration
		thenStep      time.Duration
		renewalByTime time.Duration // after t0, the send time of the Create
	}{
		{"slow", 8 * time.Second, 2 * time.Second, 10 * time.Second},
		{"slower than the interval", 12 * time.Second, 0, 12 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			l, api := e.spiedLocker("pod-a")
			api.onBefore("create", func(context.Context) error { e.clk.Step(tc.createTook); return nil })
			lk, err := l.TryAcquire(context.Background(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer lk.Release(context.Background())
			if tc.thenStep > 0 {
				e.renewerArmed(l)
				e.clk.Step(tc.thenStep)
			}
			eventually(t, "first renewal", func() bool { return e.calls("update") == 1 })
			want := t0.Add(tc.renewalByTime + 27*time.Second)
			eventually(t, "renewal applied", func() bool { return lk.SafeDeadline().Equal(want) })
		})
	}
}

// When Release deletes the Lease because the fairness bound was reached and
// a local waiter exists, it marks the slot with the resourceVersion of the
// deleted Lease before passing it on, so the next local owner can give
// remote waiters a turn. Other releases leave no mark.
func TestFairnessReleaseMarksTheSlotForYielding(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max       int
		wantYield bool
	}{
		{"bound reached", 1, true},
		{"hand-offs disabled", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, l, lk := holding(t, func(o *Options) { o.MaxLocalHandoffs = tc.max })
			ctx := context.Background()
			if tc.max > 0 { // use up the bound
				next := queue(t, l, "k", 1)[0]
				if err := lk.Release(ctx); err != nil {
					t.Fatal(err)
				}
				lk = <-next
			}
			// A waiter of our own, so the test owns the slot when it is
			// passed on and can look at it before anyone acquires.
			w := &waiter{ctx: ctx, ch: make(chan grant, 1)}
			l.mu.Lock()
			s := l.slots["k"]
			s.waiters = append(s.waiters, w)
			l.mu.Unlock()
			deleted := e.stored("k").ResourceVersion
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if g := <-w.ch; g.lk != nil || g.err != nil {
				t.Fatalf("grant = %+v, want the slot", g)
			}
			if e.stored("k") != nil {
				t.Fatal("Lease not deleted")
			}
			l.mu.Lock()
			yield := s.yieldAfter
			l.mu.Unlock()
			switch {
			case tc.wantYield && yield != deleted:
				t.Fatalf("yieldAfter = %q, want %q (the deleted Lease)", yield, deleted)
			case !tc.wantYield && yield != "":
				t.Fatalf("yieldAfter = %q after a release that was not a fairness release", yield)
			}
			l.passSlot(s, nil)
		})
	}
}

// Without local waiters, reaching the bound is an ordinary release: no mark.
func TestFairnessBoundWithoutWaitersDoesNotYield(t *testing.T) {
	_, l, lk := holding(t, func(o *Options) { o.MaxLocalHandoffs = 1 })
	ctx := context.Background()
	next := queue(t, l, "k", 1)[0]
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lk = <-next
	l.mu.Lock()
	s := l.slots["k"]
	l.mu.Unlock()
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.yieldAfter != "" || l.slots["k"] != nil {
		t.Fatalf("slot after an ordinary release: yieldAfter %q, still present %v", s.yieldAfter, l.slots["k"] != nil)
	}
}

// A renewal must not be sent once the safe deadline has passed, even when
// the renewer goes straight from one renewal to the next without a timer:
// here the first renewal met a foreign edit of the Lease (an adopt) and the
// process paused during its Get. Such a renewal would succeed and revive a
// lock whose loss Err may already have reported.
func TestNoRenewalIsSentAfterTheSafeDeadline(t *testing.T) {
	e := newEnv(t)
	// Timers never fire, so only the renewer's own check can end the lock.
	l, api := e.spiedLocker("pod-a", func(o *Options) { o.Clock = frozenTimers{FakeClock: e.clk, frozen: clocktesting.NewFakeClock(t0)} })
	var slow, edit, pause sync.Once
	api.onBefore("create", func(context.Context) error { // the first renewal is due at once
		slow.Do(func() { e.clk.Step(12 * time.Second) })
		return nil
	})
	api.onBefore("update", func(context.Context) error {
		edit.Do(func() {
			st := e.stored("k")
			st.Labels["team"] = "x"
			e.srv.Put(st)
		})
		return nil
	})
	// The pause comes after TryAcquire returned the lock (which it would
	// rightly refuse to do past the safe deadline).
	acquired := make(chan struct{})
	api.onBefore("get", func(context.Context) error {
		pause.Do(func() { <-acquired; e.clk.Step(time.Hour) })
		return nil
	})
	lk, err := l.TryAcquire(context.Background(), "k")
	close(acquired)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the renewer itself to end (Context alone would be done as
	// soon as the clock passed the deadline, before the renewer decided).
	eventually(t, "renewer ended or a second renewal", func() bool {
		select {
		case <-lk.done:
			return true
		default:
			return e.calls("update") > 1
		}
	})
	if n := e.calls("update"); n != 1 {
		t.Fatalf("%d Updates, want only the renewal that met the edit", n)
	}
	if !errors.Is(context.Cause(lk.Context()), ErrLost) || !errors.Is(lk.Err(), ErrLost) {
		t.Fatalf("cause = %v, Err = %v", context.Cause(lk.Context()), lk.Err())
	}
}
