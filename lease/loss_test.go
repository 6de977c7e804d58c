package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	clocktesting "k8s.io/utils/clock/testing"
)

// lateTimers returns an env and a Locker of pod-a on it whose clock reads
// e.clk but whose timers run on timers, a clock of their own: stepping
// e.clk past a deadline, and only later timers, is a process whose timer
// goroutine runs late, as after SIGCONT.
func lateTimers(t *testing.T) (e *env, l *Locker, timers *clocktesting.FakeClock) {
	t.Helper()
	e = newEnv(t)
	timers = clocktesting.NewFakeClock(t0)
	l = e.locker("pod-a", func(o *Options) { o.Clock = frozenTimers{FakeClock: e.clk, frozen: timers} })
	return e, l, timers
}

// After a pause the context must report the loss no later than Err does:
// its own Err, Done and cause, read before the renewer's timer has fired.
func TestContextReportsTheLossNoLaterThanErr(t *testing.T) {
	e, l, _ := lateTimers(t)
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx := lk.Context()
	derived, cancel := context.WithCancel(ctx)
	defer cancel()

	e.clk.SetTime(t0.Add(27*time.Second - time.Nanosecond))
	if ctx.Err() != nil || isDone(ctx) || lk.Err() != nil {
		t.Fatalf("lost before the safe deadline: ctx %v, Err %v", ctx.Err(), lk.Err())
	}
	e.clk.SetTime(t0.Add(27 * time.Second)) // the safe deadline; no timer fires

	// The context first, then Err: the context must not lag behind.
	if ctx.Err() == nil {
		t.Fatal("Context().Err() = nil at the safe deadline")
	}
	if !isDone(ctx) {
		t.Fatal("Context().Done() open at the safe deadline")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, ErrLost) || !strings.Contains(cause.Error(), "deadline") {
		t.Fatalf("cause = %v, want ErrLost (deadline)", cause)
	}
	if !errors.Is(lk.Err(), ErrLost) {
		t.Fatalf("Err = %v", lk.Err())
	}
	// A context derived before is cancelled with it, and the same cause.
	if !errors.Is(context.Cause(derived), ErrLost) {
		t.Fatalf("derived cause = %v", context.Cause(derived))
	}
	if err := lk.Release(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v", err)
	}
	if e.calls("delete") != 0 {
		t.Fatal("Release of a lock past its safe deadline deleted")
	}
}

// Err is a read: past the safe deadline it reports ErrLost but leaves the
// loss itself (metrics, hand-over of the key to local waiters, stopping the
// renewer) to the renewer's timer.
func TestErrIsARead(t *testing.T) {
	e, l, timers := lateTimers(t)
	reg := l.metrics
	lk, err := l.TryAcquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	next := queue(t, l, "k", 1)[0]
	e.clk.SetTime(t0.Add(time.Hour))
	for range 3 {
		if !errors.Is(lk.Err(), ErrLost) {
			t.Fatalf("Err = %v", lk.Err())
		}
	}
	if !isDone(lk.Context()) {
		t.Fatal("Context live while Err reports ErrLost")
	}
	select {
	case <-lk.stop:
		t.Fatal("Err stopped the renewer")
	default:
	}
	if n := queueLen(l, "k"); n != 1 {
		t.Fatalf("Err passed the key on: %d waiters left, want 1", n)
	}
	if got := value(t, reg.losses.WithLabelValues(string(lossDeadline))); got != 0 {
		t.Fatalf("losses_total{deadline} = %v after Err, want 0", got)
	}
	lk.mu.Lock()
	state := lk.state
	lk.mu.Unlock()
	if state != stateHeld {
		t.Fatalf("Err changed the lock's state to %v", state)
	}

	// The renewer's timer, late, declares the loss and passes the key on.
	// (The Lease goes, so the waiter can create it without waiting.)
	e.srv.Delete(testNS, LeaseName("gw-lock", "k"))
	timers.Step(time.Hour)
	w := <-next
	if got := value(t, reg.losses.WithLabelValues(string(lossDeadline))); got != 1 {
		t.Fatalf("losses_total{deadline} = %v after the timer, want 1", got)
	}
	if err := w.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A Release that finds the Lease taken over or deleted returns ErrLost, and
// from then on Err and the cause of Context say ErrLost too; a clean
// Release leaves ErrReleased.
func TestReleaseThatFindsTheLeaseLostReportsErrLost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiter  bool // a local waiter, so Release hands off instead of deleting
		change  func(e *env)
		wantErr error
	}{
		{"clean", false, func(*env) {}, ErrReleased},
		{"clean hand-off", true, func(*env) {}, ErrReleased},
		{"deleted", false, func(e *env) { e.srv.Delete(testNS, LeaseName("gw-lock", "k")) }, ErrLost},
		{"taken over", false, func(e *env) { e.foreign("k", "pod-b/1") }, ErrLost},
		{"hand-off taken over", true, func(e *env) { e.foreign("k", "pod-b/1") }, ErrLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, l, lk := holding(t)
			var next chan *Lock
			if tc.waiter {
				next = queue(t, l, "k", 1)[0]
			}
			ctx := lk.Context()
			tc.change(e)
			err := lk.Release(context.Background())
			if tc.wantErr == ErrReleased && err != nil {
				t.Fatalf("Release = %v", err)
			}
			if tc.wantErr == ErrLost && !errors.Is(err, ErrLost) {
				t.Fatalf("Release = %v, want ErrLost", err)
			}
			if got := lk.Err(); !errors.Is(got, tc.wantErr) {
				t.Fatalf("Err = %v, want %v", got, tc.wantErr)
			}
			if cause := context.Cause(ctx); !errors.Is(cause, tc.wantErr) || (tc.wantErr == ErrReleased) == errors.Is(cause, ErrLost) {
				t.Fatalf("cause = %v, want %v", cause, tc.wantErr)
			}
			if !isDone(ctx) {
				t.Fatal("Context live after Release")
			}
			// So does a context derived from it afterwards.
			derived, cancel := context.WithCancel(ctx)
			defer cancel()
			if cause := context.Cause(derived); !errors.Is(cause, tc.wantErr) {
				t.Fatalf("derived cause = %v, want %v", cause, tc.wantErr)
			}
			if next != nil {
				if tc.wantErr == ErrLost {
					e.waitersAtLeast(1)
					e.clk.Step(30 * time.Second) // pod-b's Lease expires by observation
				}
				w := <-next
				if err := w.Release(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Acquire and TryAcquire never return a lock whose safe deadline has
// passed, here because the Create was answered only at that deadline: they
// return ErrLost, leave the Lease alone (another process may be taking it
// over by now) and pass the key on.
func TestAcquireNeverReturnsALockPastItsSafeDeadline(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			e := newEnv(t)
			l, api := e.spiedLocker("pod-a")
			var slow atomic.Bool
			slow.Store(true)
			api.onAfter("create", func(error) error {
				if slow.CompareAndSwap(true, false) {
					e.clk.Step(27 * time.Second) // LeaseDuration - SafetyMargin
				}
				return nil
			})
			acquire := l.TryAcquire
			if wait {
				acquire = l.Acquire
			}
			lk, err := acquire(context.Background(), "k")
			if !errors.Is(err, ErrLost) || lk != nil {
				t.Fatalf("acquire returned a lock: %v, error %v, want ErrLost", lk != nil, err)
			}
			if e.calls("delete") != 0 || e.stored("k") == nil {
				t.Fatal("a lock past its safe deadline touched its Lease")
			}
			eventually(t, "key passed on", func() bool { return queueLen(l, "k") == -1 })
			// The key is free locally; the Lease is another matter.
			if _, err := l.TryAcquire(context.Background(), "k"); !errors.Is(err, ErrHeld) {
				t.Fatalf("next TryAcquire = %v, want ErrHeld from the leftover Lease", err)
			}
		})
	}
}

// New rejects a RequestTimeout that could outlast the safe deadline and a
// SafetyMargin too small to absorb anything, and derives the default
// RequestTimeout from short leases.
func TestNewRejectsUnsafeTimings(t *testing.T) {
	cs := newEnv(t).cs.CoordinationV1()
	for _, tc := range []struct {
		name   string
		opts   Options
		substr string
	}{
		{"request timeout past the safe deadline", Options{LeaseDuration: 10 * time.Second, RequestTimeout: 9 * time.Second}, "request timeout 9s: must be at most"},
		{"request timeout leaving less than a renew interval", Options{RequestTimeout: 17*time.Second + 1}, "request timeout"},
		{"tiny safety margin", Options{SafetyMargin: time.Nanosecond}, "safety margin 1ns: must be at least 1/100"},
		{"negative safety margin", Options{SafetyMargin: -time.Second}, "safety margin -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Namespace, o.Identity = "ns", "pod"
			if _, err := New(cs, o); err == nil || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("err = %v, want %q", err, tc.substr)
			}
		})
	}
	for _, tc := range []struct {
		lease, want time.Duration
	}{
		{30 * time.Second, 5 * time.Second},
		{5 * time.Second, 5*time.Second - 500*time.Millisecond - 5*time.Second/3},
		{time.Second, time.Second - 100*time.Millisecond - time.Second/3},
	} {
		l, err := New(cs, Options{Namespace: "ns", Identity: "pod", LeaseDuration: tc.lease, RequestTimeout: 0})
		if err != nil {
			t.Fatalf("lease %v: %v", tc.lease, err)
		}
		if l.opts.RequestTimeout != tc.want || l.opts.ReleaseTimeout != tc.want {
			t.Errorf("lease %v: default request timeout %v, release timeout %v, want %v", tc.lease, l.opts.RequestTimeout, l.opts.ReleaseTimeout, tc.want)
		}
		_ = l.Close()
	}
}

// client-go's rate limiter refuses a request whose turn would come after
// the context's deadline with an error of its own; the Locker's errors
// match context.DeadlineExceeded for it, keeping the message.
func TestRateLimiterDeadlineIsDeadlineExceeded(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden"}`)
	}))
	defer srv.Close()
	// One request now, the next one in 1000s.
	client, err := coordinationv1client.NewForConfig(&rest.Config{Host: srv.URL, RateLimiter: flowcontrol.NewTokenBucketRateLimiter(0.001, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(client, Options{Namespace: testNS, Identity: "pod-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.TryAcquire(context.Background(), "k"); !apierrors.IsForbidden(err) {
		t.Fatalf("first TryAcquire = %v, want Forbidden", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = l.TryAcquire(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "would exceed context deadline") {
		t.Fatalf("throttled TryAcquire = %v, want context.DeadlineExceeded with the limiter's message", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's context ended: the test proves nothing")
	}
	// The refused Create may have been a retry of one that was sent, so
	// the Locker reads the Lease back; the limiter refuses that Get too.
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests reached the server, want 1", n)
	}
	srv.CloseClientConnections()
}

// refuseSecondWait is a client-side rate limiter that lets the first
// request through and refuses the second the way golang.org/x/time/rate
// does when the turn would come after the context's deadline.
type refuseSecondWait struct{ n atomic.Int32 }

func (r *refuseSecondWait) TryAccept() bool { return true }
func (r *refuseSecondWait) Stop()           {}
func (r *refuseSecondWait) QPS() float32    { return 1 }
func (r *refuseSecondWait) Accept()         {}
func (r *refuseSecondWait) Wait(context.Context) error {
	if r.n.Add(1) == 2 {
		return errors.New("rate: Wait(n=1) would exceed context deadline")
	}
	return nil
}

// client-go retries a write answered with a 5xx and Retry-After, and asks
// the rate limiter again first. A Create that the server applied but
// answered with a 504, and whose retry the limiter refuses, was sent: the
// Locker must treat it as ambiguous and delete what it wrote, or the key
// stays locked by a holder nobody renews. The error still matches
// context.DeadlineExceeded.
func TestThrottledRetryOfAnAppliedCreateIsCleanedUp(t *testing.T) {
	var mu sync.Mutex
	var stored []byte
	var verbs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		verbs = append(verbs, r.Method)
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodPost:
			if stored != nil {
				w.WriteHeader(http.StatusConflict)
				_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409}`)
				return
			}
			body, _ := io.ReadAll(r.Body)
			var l coordinationv1.Lease
			_ = json.Unmarshal(body, &l)
			l.APIVersion, l.Kind = "coordination.k8s.io/v1", "Lease"
			l.UID, l.ResourceVersion = "uid-1", "100"
			stored, _ = json.Marshal(&l)
			// Applied, but the server timed out answering.
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusGatewayTimeout)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Timeout","code":504,"message":"the server was unable to return a response in the time allotted, but may still be processing the request","details":{"retryAfterSeconds":0}}`)
		case http.MethodGet:
			if stored == nil {
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
				return
			}
			_, _ = w.Write(stored)
		case http.MethodDelete:
			stored = nil
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Success","code":200}`)
		}
	}))
	defer srv.Close()
	client, err := coordinationv1client.NewForConfig(&rest.Config{
		Host:          srv.URL,
		RateLimiter:   &refuseSecondWait{},
		ContentConfig: rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(client, Options{Namespace: testNS, Identity: "pod-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.TryAcquire(context.Background(), "k")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "would exceed context deadline") {
		t.Fatalf("TryAcquire = %v, want context.DeadlineExceeded with the limiter's message", err)
	}
	mu.Lock()
	got, left := strings.Join(verbs, ","), stored != nil
	mu.Unlock()
	// The Create, then the read-back and the conditional Delete of what it
	// wrote.
	if want := "POST,GET,DELETE"; got != want {
		t.Errorf("requests %s, want %s", got, want)
	}
	if left {
		t.Fatal("the applied Create's Lease was left behind, held by a holder nobody renews")
	}
}
