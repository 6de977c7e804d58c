package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestTryAcquireLocallyHeldMakesNoAPICall(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	defer lk.Release(ctx)
	e.cs.ClearActions()
	if _, err := l.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatalf("err = %v, want ErrHeld (no re-entrancy)", err)
	}
	if n := e.totalCalls(); n != 0 {
		t.Fatalf("%d API calls for a locally held key", n)
	}
}

// queue starts Acquire calls one after another, each queued before the
// next starts, and returns their results in start order.
func queue(t *testing.T, l *Locker, key string, n int) []chan *Lock {
	t.Helper()
	out := make([]chan *Lock, n)
	for i := range out {
		ch := make(chan *Lock, 1)
		out[i] = ch
		go func() {
			lk, err := l.Acquire(context.Background(), key)
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
			ch <- lk
		}()
		eventually(t, "queued", func() bool { return queueLen(l, key) == i+1 })
	}
	return out
}

func TestLocalFIFOHandoffIsOneUpdate(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	e.cs.ClearActions()
	waiters := queue(t, l, "k", 3)
	if n := e.totalCalls(); n != 0 {
		t.Fatalf("local waiting made %d API calls", n)
	}
	prev := lk
	for i, ch := range waiters {
		before := e.stored("k")
		e.cs.ClearActions()
		if err := prev.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		next := <-ch
		if acts := e.cs.Actions(); len(acts) != 1 || acts[0].GetVerb() != "update" {
			t.Fatalf("hand-off %d calls: %v", i, acts)
		}
		if queueLen(l, "k") != len(waiters)-i-1 {
			t.Fatalf("FIFO: waiter %d served out of order", i)
		}
		st := e.stored("k")
		if *st.Spec.HolderIdentity != next.Holder() || next.Holder() == prev.Holder() ||
			*st.Spec.LeaseTransitions != *before.Spec.LeaseTransitions+1 {
			t.Fatalf("hand-off bookkeeping: %+v", st.Spec)
		}
		if mustCompare(t, next.Token(), prev.Token()) <= 0 {
			t.Fatalf("token did not increase across hand-off: %v -> %v", prev.Token(), next.Token())
		}
		if !errors.Is(context.Cause(prev.Context()), ErrReleased) {
			t.Fatal("previous holder's context not released")
		}
		prev = next
	}
	e.cs.ClearActions()
	if err := prev.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if e.calls("delete") != 1 || e.stored("k") != nil {
		t.Fatal("last release must delete")
	}
}

func TestFairnessBoundForcesARealRelease(t *testing.T) {
	e, l, lk := holding(t) // MaxLocalHandoffs defaults to 8
	ctx := context.Background()
	waiters := queue(t, l, "k", 10)
	e.cs.ClearActions()
	prev := lk
	for i, ch := range waiters {
		if err := prev.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		if i == 8 {
			// The fairness release deleted the Lease; the 9th waiter
			// gives watching processes the yield window before its Create.
			eventually(t, "the yield", func() bool { return e.calls("watch") == 1 && e.clk.Waiters() >= 1 })
			e.clk.Step(yieldWindow)
		}
		next := <-ch
		if mustCompare(t, next.Token(), prev.Token()) <= 0 {
			t.Fatal("token order")
		}
		prev = next
	}
	if err := prev.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// 8 hand-offs, then Delete + Create (the 9th waiter acquires remotely,
	// resetting the count), then the 10th is hand-off number 1 of the new
	// run, then the final release deletes.
	if u, d, c := e.calls("update"), e.calls("delete"), e.calls("create"); u != 9 || d != 2 || c != 1 {
		t.Fatalf("updates %d deletes %d creates %d, want 9, 2, 1: %v", u, d, c, e.cs.Actions())
	}
}

func TestWaiterWhoseContextEndsLeavesTheQueue(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(wctx, "k")
		done <- err
	}()
	eventually(t, "queued", func() bool { return queueLen(l, "k") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if queueLen(l, "k") != 0 {
		t.Fatal("waiter still queued")
	}
	e.cs.ClearActions()
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if e.calls("update") != 0 || e.calls("delete") != 1 {
		t.Fatalf("release with no live waiter must delete: %v", e.cs.Actions())
	}
}

func TestLossPassesTheKeyToTheNextLocalWaiter(t *testing.T) {
	e, l, lk := holding(t)
	ctx := context.Background()
	e.renewerArmed(l)
	waiters := queue(t, l, "k", 1)
	e.srv.Delete(testNS, LeaseName("gw-lock", "k"))
	e.clk.Step(10 * time.Second) // the renewal finds the Lease gone
	next := <-waiters[0]
	if !errors.Is(lk.Err(), ErrLost) {
		t.Fatalf("Err = %v", lk.Err())
	}
	if next == nil || mustCompare(t, next.Token(), lk.Token()) <= 0 {
		t.Fatal("waiter did not acquire after the loss")
	}
	if err := next.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseWithCancelledContextStillReleases(t *testing.T) {
	e := newEnv(t)
	l := e.locker("pod-a")
	ctx, cancel := context.WithCancel(context.Background())
	lk, err := l.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if isDone(lk.Context()) {
		t.Fatal("the lock's context must not inherit the acquiring call's cancellation")
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if e.stored("k") != nil {
		t.Fatal("not released")
	}
}

func TestReleaseLostLease(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *env)
		kept   bool
	}{
		{"absent", func(e *env) { e.srv.Delete(testNS, LeaseName("gw-lock", "k")) }, false},
		{"taken over", func(e *env) { e.foreign("k", "pod-b/1") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, lk := holding(t)
			ctx := context.Background()
			tc.change(e)
			if err := lk.Release(ctx); !errors.Is(err, ErrLost) {
				t.Fatalf("Release = %v, want ErrLost", err)
			}
			if tc.kept {
				if st := e.stored("k"); st == nil || *st.Spec.HolderIdentity != "pod-b/1" {
					t.Fatal("Release removed another holder's Lease")
				}
			}
			// Once Release found the loss, the lock reports it everywhere.
			if err := lk.Release(ctx); !errors.Is(err, ErrLost) {
				t.Fatalf("second Release = %v, want ErrLost", err)
			}
		})
	}
}

func TestReleaseOfNilLock(t *testing.T) {
	var lk *Lock
	if err := lk.Release(context.Background()); !errors.Is(err, ErrNotHeld) {
		t.Fatal(err)
	}
	if err := (&Lock{}).Err(); !errors.Is(err, ErrNotHeld) {
		t.Fatal(err)
	}
}

func TestTokensIncreaseAcrossReleaseTakeoverAndHandoff(t *testing.T) {
	e := newEnv(t)
	a := e.locker("pod-a")
	b := e.locker("pod-b")
	ctx := context.Background()
	var tokens []Token
	take := func(lk *Lock, err error) *Lock {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, lk.Token())
		return lk
	}
	lk := take(a.TryAcquire(ctx, "k")) // create
	lk.Release(ctx)
	lk = take(b.TryAcquire(ctx, "k")) // create after delete
	ch := queue(t, b, "k", 1)
	lk.Release(ctx)
	lk = take(<-ch[0], nil) // hand-off
	// pod-b crashes (its renewer stops without a release).
	e.renewerArmed(b)
	_, release := e.hangUpdates()
	if _, err := a.TryAcquire(ctx, "k"); !errors.Is(err, ErrHeld) {
		t.Fatal(err)
	}
	e.clk.Step(30 * time.Second)
	eventually(t, "loss", func() bool { return isDone(lk.Context()) })
	release()
	e.api.onBefore("update", nil)
	lk2 := take(a.TryAcquire(ctx, "k")) // takeover
	lk2.Release(ctx)
	for i := 1; i < len(tokens); i++ {
		if mustCompare(t, tokens[i], tokens[i-1]) <= 0 {
			t.Fatalf("tokens not strictly increasing: %v", tokens)
		}
	}
}

func TestCloseReleasesEverythingAndLeaksNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	e := newEnv(t)
	l, err := New(e.api, Options{Namespace: testNS, Identity: "pod-a", Prefix: "gw-lock", Clock: e.clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held, err := l.TryAcquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	e.foreign("b", "pod-b/1")
	remote := make(chan error, 1)
	go func() { _, err := l.Acquire(ctx, "b"); remote <- err }()
	local := make(chan error, 1)
	go func() { _, err := l.Acquire(ctx, "a"); local <- err }()
	eventually(t, "waiters", func() bool { return queueLen(l, "a") == 1 && e.calls("watch") == 1 })

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, ch := range []chan error{remote, local} {
		if err := <-ch; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter err = %v, want ErrClosed", err)
		}
	}
	cause := context.Cause(held.Context())
	if !errors.Is(cause, ErrClosed) || !errors.Is(cause, ErrReleased) || errors.Is(cause, ErrLost) {
		t.Fatalf("cause = %v", cause)
	}
	if e.stored("a") != nil {
		t.Fatal("Close did not release")
	}
	if _, err := l.TryAcquire(ctx, "c"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatalf("Release after Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}

// gatedContext holds the first call of Done until open is closed, and
// reports it through entered. An Acquire queued behind a local holder
// calls Done first when it starts waiting for its grant: the gate holds it
// there, with its place in the queue taken.
type gatedContext struct {
	context.Context
	once    sync.Once
	entered chan struct{}
	open    chan struct{}
}

func (c *gatedContext) Done() <-chan struct{} {
	c.once.Do(func() {
		close(c.entered)
		<-c.open
	})
	return c.Context.Done()
}

// A waiter granted the lock by a hand-off, which Close releases before
// Acquire returns it: Acquire fails with ErrClosed, the documented error of
// acquisitions while the Locker closes, and returns no lock.
func TestAcquireGrantedAHandoffThatCloseReleasedIsClosed(t *testing.T) {
	e, l, lk, ctx, res := handedOffToHeldWaiter(t)
	if holderOf(e.stored("k")) == lk.Holder() {
		t.Fatal("setup: Release did not hand the Lease off to the waiter")
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	eventually(t, "Close released the handed-off lock", func() bool { return e.stored("k") == nil })
	close(ctx.open)
	if err := receive(t, res, "Acquire"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire = %v, want ErrClosed", err)
	}
	if err := receive(t, closed, "Close"); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

// Close releasing a lock whose Lease was taken over finds the takeover:
// the cause of its Context is ErrLost, as for Release, and Close, which
// returns release errors other than ErrLost, returns nil.
func TestCloseOfATakenOverLockEndsItLost(t *testing.T) {
	e, l, lk := holding(t)
	ctx := lk.Context()
	e.foreign("k", "pod-b/1")
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if cause := context.Cause(ctx); !errors.Is(cause, ErrLost) || errors.Is(cause, ErrClosed) {
		t.Fatalf("cause = %v, want ErrLost", cause)
	}
	if !errors.Is(lk.Err(), ErrLost) {
		t.Fatalf("Err = %v, want ErrLost", lk.Err())
	}
	if holderOf(e.stored("k")) != "pod-b/1" {
		t.Fatal("Close deleted another holder's Lease")
	}
}

// handedOffToHeldWaiter holds "k", queues a waiter whose Acquire is held on
// its context (gatedContext) after it joined the queue, and releases the
// lock, which hands it to that waiter. The waiter's Acquire has not
// returned yet: it finishes, sending its error to res, once ctx.open is
// closed.
func handedOffToHeldWaiter(t *testing.T) (*env, *Locker, *Lock, *gatedContext, chan error) {
	t.Helper()
	e := newEnv(t)
	l := e.locker("pod-a")
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx := &gatedContext{Context: context.Background(), entered: make(chan struct{}), open: make(chan struct{})}
	res := make(chan error, 1)
	go func() {
		w, err := l.Acquire(ctx, "k")
		if w != nil {
			err = fmt.Errorf("Acquire returned a lock (Err %v)", w.Err())
		}
		res <- err
	}()
	<-ctx.entered
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, l, lk, ctx, res
}

// As TestAcquireGrantedAHandoffThatCloseReleasedIsClosed, but the handed-off
// Lease is taken over before Close releases it. The waiter is still an
// acquisition ended by Close, so its error matches ErrClosed, and ErrLost
// too, since the release found the takeover.
func TestAcquireEndedByCloseOfATakenOverHandoffIsClosed(t *testing.T) {
	e, l, _, ctx, res := handedOffToHeldWaiter(t)
	e.foreign("k", "pod-b/1")
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	l.mu.Lock()
	handed := l.slots["k"].holder
	l.mu.Unlock()
	eventually(t, "Close released the handed-off lock and found the takeover", func() bool { return errors.Is(handed.Err(), ErrLost) })
	t.Logf("handed-off lock: Err %v", handed.Err())
	close(ctx.open)
	err := receive(t, res, "Acquire")
	if err := receive(t, closed, "Close"); err != nil {
		t.Fatalf("Close = %v", err)
	}
	t.Logf("Acquire = %v", err)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrLost) {
		t.Fatalf("Acquire = %v, want ErrClosed and ErrLost", err)
	}
}
