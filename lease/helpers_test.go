package lease

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/lease/internal/fakeapi"
)

const testNS = "leasehold-system"

// t0 is the fake clock's start. Remote timestamps in tests are chosen far
// from it on purpose: expiry must never depend on them.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	srv *fakeapi.Server
	cs  *fake.Clientset
	clk *clocktesting.FakeClock
	api *spy // what e.locker's Lockers call through
}

// spy wraps the clientset's Leases for the Lockers a test builds on it. It
// counts their calls by verb (e.calls counts everyone's) and runs the hooks
// a test sets per verb, so a call can be blocked, slowed or answered wrongly
// the way a black-holed or broken connection would. Reactors cannot: the
// fake clientset runs them under its own lock, and hooks run outside it.
// Only Create, Get, Update, Delete and Watch are spied on.
type spy struct {
	e *env

	mu        sync.Mutex
	n         map[string]int
	before    map[string]func(ctx context.Context) error // nil to make the call, or the error to answer without making it
	after     map[string]func(err error) error           // nil to answer with the call's result, or the error to answer instead
	nextWatch []watch.Interface                          // answer the next Watches instead of the server
	watchOpts []metav1.ListOptions
	watches   []watch.Interface
}

func (e *env) newSpy() *spy {
	return &spy{e: e, n: map[string]int{}, before: map[string]func(context.Context) error{}, after: map[string]func(error) error{}}
}

func (s *spy) Leases(ns string) coordinationv1client.LeaseInterface {
	return spiedLeases{LeaseInterface: s.e.cs.CoordinationV1().Leases(ns), s: s}
}

// onBefore sets (or, with nil, removes) the hook run before each call with
// verb. A hook returning an error answers the call with it unsent.
func (s *spy) onBefore(verb string, hook func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before[verb] = hook
}

// onAfter sets (or, with nil, removes) the hook run after each call with
// verb, given the call's error. A hook returning an error answers the call
// with it instead of the call's result, which has landed all the same.
func (s *spy) onAfter(verb string, hook func(err error) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.after[verb] = hook
}

// serveNextWatch answers the next Watch with w instead of the server's.
func (s *spy) serveNextWatch(w watch.Interface) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextWatch = append(s.nextWatch, w)
}

func (s *spy) calls(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[verb]
}

// counts returns the calls made so far, by verb.
func (s *spy) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.n)
}

// watch returns the i-th watch a Watch answered with.
func (s *spy) watch(i int) watch.Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches[i]
}

// watchOptions returns the options of the i-th Watch.
func (s *spy) watchOptions(i int) metav1.ListOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watchOpts[i]
}

// enter counts a call and returns the hooks to run around it.
func (s *spy) enter(verb string) (before func(context.Context) error, after func(error) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[verb]++
	return s.before[verb], s.after[verb]
}

type spiedLeases struct {
	coordinationv1client.LeaseInterface
	s *spy
}

// call runs do between verb's hooks.
func call[T any](s *spy, ctx context.Context, verb string, do func() (T, error)) (T, error) {
	var zero T
	before, after := s.enter(verb)
	if before != nil {
		if err := before(ctx); err != nil {
			return zero, err
		}
	}
	got, err := do()
	if after != nil {
		if lost := after(err); lost != nil {
			return zero, lost
		}
	}
	return got, err
}

func (c spiedLeases) Create(ctx context.Context, l *coordinationv1.Lease, o metav1.CreateOptions) (*coordinationv1.Lease, error) {
	return call(c.s, ctx, "create", func() (*coordinationv1.Lease, error) { return c.LeaseInterface.Create(ctx, l, o) })
}

func (c spiedLeases) Get(ctx context.Context, name string, o metav1.GetOptions) (*coordinationv1.Lease, error) {
	return call(c.s, ctx, "get", func() (*coordinationv1.Lease, error) { return c.LeaseInterface.Get(ctx, name, o) })
}

func (c spiedLeases) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	return call(c.s, ctx, "update", func() (*coordinationv1.Lease, error) { return c.LeaseInterface.Update(ctx, l, o) })
}

func (c spiedLeases) Delete(ctx context.Context, name string, o metav1.DeleteOptions) error {
	_, err := call(c.s, ctx, "delete", func() (struct{}, error) { return struct{}{}, c.LeaseInterface.Delete(ctx, name, o) })
	return err
}

func (c spiedLeases) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	c.s.mu.Lock()
	c.s.watchOpts = append(c.s.watchOpts, o)
	c.s.mu.Unlock()
	w, err := call(c.s, ctx, "watch", func() (watch.Interface, error) {
		c.s.mu.Lock()
		var next watch.Interface
		if len(c.s.nextWatch) > 0 {
			next, c.s.nextWatch = c.s.nextWatch[0], c.s.nextWatch[1:]
		}
		c.s.mu.Unlock()
		if next != nil {
			return next, nil
		}
		return c.LeaseInterface.Watch(ctx, o)
	})
	if w != nil {
		c.s.mu.Lock()
		c.s.watches = append(c.s.watches, w)
		c.s.mu.Unlock()
	}
	return w, err
}

func newEnv(t *testing.T) *env {
	srv := fakeapi.New()
	e := &env{t: t, srv: srv, cs: srv.Clientset(), clk: clocktesting.NewFakeClock(t0)}
	e.api = e.newSpy()
	return e
}

// locker returns a Locker on e's clientset and clock, closed at test end.
func (e *env) locker(identity string, mods ...func(*Options)) *Locker {
	e.t.Helper()
	return e.lockerVia(e.api, identity, mods...)
}

// spiedLocker returns a Locker with a spy of its own, closed at test end.
func (e *env) spiedLocker(identity string, mods ...func(*Options)) (*Locker, *spy) {
	e.t.Helper()
	s := e.newSpy()
	return e.lockerVia(s, identity, mods...), s
}

func (e *env) lockerVia(s *spy, identity string, mods ...func(*Options)) *Locker {
	e.t.Helper()
	opts := Options{Namespace: testNS, Identity: identity, Prefix: "gw-lock", Clock: e.clk}
	for _, m := range mods {
		m(&opts)
	}
	l, err := New(s, opts)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() {
		if err := l.Close(); err != nil {
			e.t.Errorf("Close: %v", err)
		}
	})
	return l
}

// holding returns a new env and a Locker of pod-a on it that holds "k".
func holding(t *testing.T, mods ...func(*Options)) (*env, *Locker, *Lock) {
	t.Helper()
	e := newEnv(t)
	l := e.locker("pod-a", mods...)
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	return e, l, lk
}

// calls counts the Lease API calls with the given verb made so far.
func (e *env) calls(verb string) int {
	n := 0
	for _, a := range e.cs.Actions() {
		if a.GetResource().Resource == "leases" && a.GetVerb() == verb {
			n++
		}
	}
	return n
}

func (e *env) totalCalls() int { return len(e.cs.Actions()) }

// foreign stores a Lease held by another process, with a renewTime an hour
// before the local clock (irrelevant by design) and a 30s duration.
func (e *env) foreign(key, holder string) *coordinationv1.Lease {
	secs := int32(30)
	old := metav1.NewMicroTime(t0.Add(-time.Hour))
	return e.srv.Put(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: LeaseName("gw-lock", key), Namespace: testNS,
			Labels:      map[string]string{LabelManagedBy: ManagedByValue, LabelPrefix: "gw-lock"},
			Annotations: map[string]string{AnnotationKey: key},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &old, RenewTime: &old},
	})
}

func (e *env) stored(key string) *coordinationv1.Lease {
	return e.srv.Get(testNS, LeaseName("gw-lock", key))
}

// eventually polls cond until it holds. It synchronises with goroutines;
// it proves nothing about timing (the fake clock does that).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitersAtLeast waits until n timers are pending on the fake clock, so a
// Step cannot overtake a goroutine that is about to arm one.
func (e *env) waitersAtLeast(n int) {
	e.t.Helper()
	eventually(e.t, "clock waiters", func() bool { return e.clk.Waiters() >= n })
}

// renewerArmed waits until lk's renewer has armed its two timers.
func (e *env) renewerArmed(l *Locker) {
	e.t.Helper()
	eventually(e.t, "renewer timers", func() bool { return e.clk.Waiters() >= 2 })
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func queueLen(l *Locker, key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.slots[key]; s != nil {
		return len(s.waiters)
	}
	return -1
}

// hangUpdates makes every Update of e.locker's Lockers hang like a
// black-holed connection: until its context ends (as a real client's
// would) or release is called.
func (e *env) hangUpdates() (entered func() int, release func()) {
	var mu sync.Mutex
	n := 0
	ch := make(chan struct{})
	var once sync.Once
	e.api.onBefore("update", func(ctx context.Context) error {
		mu.Lock()
		n++
		mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return errors.New("connection reset")
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, func() { once.Do(func() { close(ch) }) }
}

// blockDeletes makes Deletes wait until unblock is called (or their
// context ends), and reports through entered when one is waiting.
func (s *spy) blockDeletes() (entered <-chan struct{}, unblock func()) {
	in := make(chan struct{}, 16)
	ch := make(chan struct{})
	var once sync.Once
	s.onBefore("delete", func(ctx context.Context) error {
		in <- struct{}{}
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return nil
	})
	return in, func() { once.Do(func() { close(ch) }) }
}

// loseNextUpdateAck lets the next Update land but answers it with a
// transport error, as when a connection breaks after the request was sent.
// pending reports whether that Update is still to come.
func (s *spy) loseNextUpdateAck() (pending func() bool) {
	var armed atomic.Bool
	armed.Store(true)
	s.onAfter("update", func(error) error {
		if armed.CompareAndSwap(true, false) {
			return errors.New("connection reset by peer")
		}
		return nil
	})
	return armed.Load
}

func mustCompare(t *testing.T, a, b Token) int {
	t.Helper()
	c, err := a.Compare(b)
	if err != nil {
		t.Fatalf("Compare(%v, %v): %v", a, b, err)
	}
	return c
}
