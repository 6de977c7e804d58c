package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	mu           sync.Mutex
	beforeUpdate func(ctx context.Context) error // runs outside the fake's lock
}

// interceptor wraps the clientset's Leases so a test can block calls the
// way a black-holed connection does. Reactors cannot: the fake clientset
// runs them under its own lock.
type interceptor struct{ e *env }

func (i interceptor) Leases(ns string) coordinationv1client.LeaseInterface {
	return interceptedLeases{LeaseInterface: i.e.cs.CoordinationV1().Leases(ns), e: i.e}
}

type interceptedLeases struct {
	coordinationv1client.LeaseInterface
	e *env
}

func (c interceptedLeases) Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	c.e.mu.Lock()
	hook := c.e.beforeUpdate
	c.e.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return nil, err
		}
	}
	return c.LeaseInterface.Update(ctx, l, opts)
}

func newEnv(t *testing.T) *env {
	srv := fakeapi.New()
	return &env{t: t, srv: srv, cs: srv.Clientset(), clk: clocktesting.NewFakeClock(t0)}
}

// locker returns a Locker on e's clientset and clock, closed at test end.
func (e *env) locker(identity string, mods ...func(*Options)) *Locker {
	e.t.Helper()
	opts := Options{Namespace: testNS, Identity: identity, Prefix: "gw-lock", Clock: e.clk}
	for _, m := range mods {
		m(&opts)
	}
	l, err := New(interceptor{e}, opts)
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

// hangUpdates makes every Update hang like a black-holed connection:
// until its context ends (as a real client's would) or release is called.
func (e *env) hangUpdates() (entered func() int, release func()) {
	var mu sync.Mutex
	n := 0
	ch := make(chan struct{})
	var once sync.Once
	e.mu.Lock()
	e.beforeUpdate = func(ctx context.Context) error {
		mu.Lock()
		n++
		mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return errors.New("connection reset")
	}
	e.mu.Unlock()
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, func() { once.Do(func() { close(ch) }) }
}

func mustCompare(t *testing.T, a, b Token) int {
	t.Helper()
	c, err := a.Compare(b)
	if err != nil {
		t.Fatalf("Compare(%v, %v): %v", a, b, err)
	}
	return c
}
