package dedup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// A connection reset after the request was sent, as the HTTP client
// reports it.
func resetErr(method string) error {
	return &url.Error{Op: method, URL: "https://apiserver/apis/leasehold.dev/v1alpha1/x",
		Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
}

var rrKind = schema.GroupKind{Group: "leasehold.dev", Kind: "RemediationRequest"}

// A connection refused: nothing was sent.
var refusedErr = &url.Error{Op: "Put", URL: "https://apiserver/apis/leasehold.dev/v1alpha1/x",
	Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}

func TestAmbiguous(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Put", URL: "https://apiserver/x", Err: err} }
	// A status client-go made up from an answer without a Status body,
	// as from a proxy in front of the API server.
	bare := func(code int) error {
		return apierrors.NewGenericServerResponse(code, "PUT", rrResource, "x", "", 0, true)
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},

		// Statuses the API server answers without applying the write.
		{"conflict", apierrors.NewConflict(rrResource, "x", errors.New("changed")), false},
		{"already exists", apierrors.NewAlreadyExists(rrResource, "x"), false},
		{"not found", apierrors.NewNotFound(rrResource, "x"), false},
		{"invalid", apierrors.NewInvalid(rrKind, "x", field.ErrorList{field.Required(field.NewPath("spec"), "")}), false},
		{"bad request", apierrors.NewBadRequest("bad"), false},
		{"unauthorized", apierrors.NewUnauthorized("who"), false},
		{"forbidden", apierrors.NewForbidden(rrResource, "x", errors.New("no")), false},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), false},
		{"422 without a status body", bare(http.StatusUnprocessableEntity), false},
		{"wrapped conflict", fmt.Errorf("update: %w", apierrors.NewConflict(rrResource, "x", errors.New("changed"))), false},
		{"503 from the API server", apierrors.NewServiceUnavailable("etcd down"), false},

		// Statuses after which the write may have reached storage.
		{"503 without a status body (a proxy)", bare(http.StatusServiceUnavailable), true},
		{"gateway timeout", apierrors.NewTimeoutError("etcd slow", 1), true},
		{"504 without a status body", bare(http.StatusGatewayTimeout), true},
		{"502 without a status body", bare(http.StatusBadGateway), true},
		{"500 without a status body", bare(http.StatusInternalServerError), true},
		{"408 request timeout", bare(http.StatusRequestTimeout), true},
		{"server timeout", apierrors.NewServerTimeout(rrResource, "update", 1), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcdserver: request timed out")), true},
		{"wrapped internal error", fmt.Errorf("update: %w", apierrors.NewInternalError(errors.New("x"))), true},

		// Transport errors after the request may have been sent.
		{"connection reset", resetErr("Put"), true},
		{"EOF", wrap(io.EOF), true},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), true},
		{"http2 connection lost", wrap(errors.New("http2: client connection lost")), true},
		{"wrapped http2 connection lost", fmt.Errorf("update x: %w", errors.New("http2: client connection lost")), true},
		{"http2 stream error", errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), true},
		// client-go's words when the body of an answer is lost.
		{"body read failed", fmt.Errorf("unexpected error when reading response body. Please retry. Original error: %w",
			errors.New("http2: response body closed")), true},
		{"per-request deadline", wrap(context.DeadlineExceeded), true},
		{"bare deadline", context.DeadlineExceeded, true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"broken pipe", os.NewSyscallError("write", syscall.EPIPE), true},
		{"unrecognised error", errors.New("something else"), true},

		// Nothing was sent.
		{"dial refused", refusedErr, false},
		{"dial timeout", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}), false},
		{"bare refused", syscall.ECONNREFUSED, false},
		{"type not registered", runtime.NewNotRegisteredErrForType("scheme", reflect.TypeFor[struct{}]()), false},
		{"missing kind", runtime.NewMissingKindErr("{}"), false},
		{"no REST mapping", &meta.NoKindMatchError{GroupKind: rrKind}, false},
	} {
		if got := ambiguous(tc.err); got != tc.want {
			t.Errorf("%s: ambiguous(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// bump is another replica's count update: one more occurrence and its own
// write id.
func bump(t *testing.T, c client.Client, name, id string) {
	t.Helper()
	var rr v1alpha1.RemediationRequest
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: testNS, Name: name}, &rr); err != nil {
		t.Error(err) // on the worker goroutine: no Fatal
		return
	}
	d := rr.EffectiveDeduplication()
	d.OccurrenceCount++
	d.RecentWrites = appendWrite(d.RecentWrites, id)
	rr.Status.Deduplication = &d
	if err := c.Status().Update(context.Background(), &rr); err != nil {
		t.Error(err)
	}
}

// batchOf records n concurrent incidents that all join one batch: the
// first attempt's read (hold) waits until all n are pending. It steps the
// fake clock while they run.
func (e *env) batchOf(t *testing.T, n int, hold *func() error) ([]Result, []error) {
	t.Helper()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	*hold = func() error {
		select {
		case entered <- struct{}{}:
			<-release
		default:
		}
		return nil
	}
	results, errs := make([]Result, n), make([]error, n)
	var wg sync.WaitGroup
	wg.Go(func() { results[0], errs[0] = e.rec.Record(context.Background(), incident("A")) })
	<-entered
	for i := 1; i < n; i++ {
		wg.Go(func() { results[i], errs[i] = e.rec.Record(context.Background(), incident("A")) })
	}
	waitFor(t, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		g := e.rec.groups[incident("A").Fingerprint]
		return g != nil && len(g.pending) == n
	})
	*hold = nil
	close(release)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitFor(t, func() bool {
		select {
		case <-done:
			return true
		default:
			if e.clock.HasWaiters() {
				e.clock.Step(2 * time.Second)
			}
			return false
		}
	})
	e.idle(t)
	return results, errs
}

// An update the API server applied but whose answer was lost is read back
// and found: every caller of the batch gets its Duplicate, and nothing is
// written twice.
func TestAppliedUpdateWithLostAnswerCountsOnce(t *testing.T) {
	e := newEnv(t, Options{})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Bool
	e.afterUpdate = func(_ client.Client, err error) error {
		if err == nil && lost.CompareAndSwap(false, true) {
			return resetErr("Put")
		}
		return err
	}
	gets := e.gets.Load()
	results, errs := e.batchOf(t, 3, &e.onGet)
	if n := e.gets.Load() - gets; n != 2 {
		t.Errorf("gets = %d, want 2 (the attempt's read and one read back)", n)
	}
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if results[i] != (Result{Outcome: Duplicate, Name: first.Name, OccurrenceCount: 4}) {
			t.Errorf("caller %d: %+v, want duplicate with count 4", i, results[i])
		}
	}
	if !lost.Load() || e.updates.Load() != 1 {
		t.Fatalf("answer lost %v, updates %d; want true and exactly 1", lost.Load(), e.updates.Load())
	}
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 4 {
		t.Fatalf("occurrenceCount = %d, want 4", got)
	}
	if e.attempts(resultNotApplied) != 0 || e.attempts(resultUnknown) != 0 {
		t.Errorf("attempts: not applied %d unknown %d, want 0 and 0", e.attempts(resultNotApplied), e.attempts(resultUnknown))
	}
}

// A create the API server applied but whose answer was lost: its creator
// gets Created, the rest of the batch is counted into it once.
func TestAppliedCreateWithLostAnswerCountsOnce(t *testing.T) {
	e := newEnv(t, Options{})
	var lost atomic.Bool
	e.afterCreate = func(_ client.WithWatch, err error) error {
		if err == nil && lost.CompareAndSwap(false, true) {
			return resetErr("Post")
		}
		return err
	}
	results, errs := e.batchOf(t, 3, &e.onList)
	created, dup := 0, 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		switch {
		case results[i].Outcome == Created && results[i].OccurrenceCount == 1:
			created++
		case results[i].Outcome == Duplicate && results[i].OccurrenceCount == 3:
			dup++
		default:
			t.Errorf("caller %d: %+v", i, results[i])
		}
	}
	if created != 1 || dup != 2 {
		t.Fatalf("created %d duplicate %d, want 1 and 2", created, dup)
	}
	if !lost.Load() || e.creates.Load() != 1 || e.updates.Load() != 1 {
		t.Fatalf("answer lost %v, creates %d, updates %d; want true, 1, 1", lost.Load(), e.creates.Load(), e.updates.Load())
	}
	rr := e.get(t, results[0].Name)
	if got := rr.EffectiveDeduplication().OccurrenceCount; got != 3 {
		t.Fatalf("occurrenceCount = %d, want 3", got)
	}
	if rr.Annotations[v1alpha1.AnnotationWriteID] == "" {
		t.Error("the create recorded no write id")
	}
}

// A write reset before the API server applied it is read back, not found,
// and retried: counted once.
func TestWriteNotAppliedIsRetried(t *testing.T) {
	t.Run("update", func(t *testing.T) {
		e := newEnv(t, Options{})
		first, err := e.record(t, incident("A"))
		if err != nil {
			t.Fatal(err)
		}
		var resets atomic.Int32
		e.onUpdate = func(client.Object) error {
			if resets.Add(1) == 1 {
				return resetErr("Put")
			}
			return nil
		}
		res, err := e.record(t, incident("A"))
		if err != nil || res != (Result{Outcome: Duplicate, Name: first.Name, OccurrenceCount: 2}) {
			t.Fatalf("%+v, %v; want duplicate with count 2", res, err)
		}
		if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 2 {
			t.Fatalf("occurrenceCount = %d, want 2", got)
		}
		if e.attempts(resultNotApplied) != 1 || e.updates.Load() != 2 {
			t.Errorf("not applied attempts %d, updates %d; want 1 and 2", e.attempts(resultNotApplied), e.updates.Load())
		}
	})
	t.Run("create", func(t *testing.T) {
		e := newEnv(t, Options{})
		var resets atomic.Int32
		e.onCreate = func(client.WithWatch, client.Object) error {
			if resets.Add(1) == 1 {
				return resetErr("Post")
			}
			return nil
		}
		res, err := e.record(t, incident("A"))
		if err != nil || res.Outcome != Created || res.OccurrenceCount != 1 {
			t.Fatalf("%+v, %v; want created with count 1", res, err)
		}
		if got := e.get(t, res.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
			t.Fatalf("occurrenceCount = %d, want 1", got)
		}
		if e.attempts(resultNotApplied) != 1 || e.creates.Load() != 2 {
			t.Errorf("not applied attempts %d, creates %d; want 1 and 2", e.attempts(resultNotApplied), e.creates.Load())
		}
	})
}

// recordStepping runs Record and steps the fake clock by 100ms whenever
// something waits on it, a step that divides every deadline and wait, so
// that none is overshot. It returns Record's answer and the clock's time
// when it came.
func (e *env) recordStepping(t *testing.T, ctx context.Context, in Incident) (Result, error, time.Time) {
	t.Helper()
	type out struct {
		res Result
		err error
		at  time.Time
	}
	done := make(chan out, 1)
	go func() {
		res, err := e.rec.Record(ctx, in)
		done <- out{res, err, e.clock.Now()}
	}()
	var o out
	waitFor(t, func() bool {
		select {
		case o = <-done:
			return true
		default:
			if e.clock.HasWaiters() {
				e.clock.Step(100 * time.Millisecond)
			}
			return false
		}
	})
	return o.res, o.err, o.at
}

// A read back that never succeeds keeps reading, past any fixed number of
// reads, until the budget of MaxOutcomeWait from the write ends; then the
// outcome is unknown. Each read fails at once, as against an API server
// that is down and refuses connections.
func TestUnreadableOutcomeIsUnknownAtTheBudget(t *testing.T) {
	e := newEnv(t, Options{Rand: seededRand(1)})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		failing   atomic.Bool
		readsBack atomic.Int32
		sentMu    sync.Mutex
		sent      time.Time
	)
	e.afterUpdate = func(_ client.Client, err error) error {
		sentMu.Lock()
		sent = e.clock.Now()
		sentMu.Unlock()
		failing.Store(true)
		return resetErr("Put")
	}
	getRefused := &url.Error{Op: "Get", URL: "https://apiserver/x", Err: refusedErr.Err}
	e.onGet = func() error {
		if failing.Load() {
			readsBack.Add(1)
			return getRefused
		}
		return nil
	}
	// The clock is stepped while Record runs, so the hook above sees the
	// write a step or more after the Recorder took its time: the write was
	// sent between before and sent.
	before := e.clock.Now()
	_, err, at := e.recordStepping(t, context.Background(), incident("A"))
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotRecorded) {
		t.Fatalf("err = %v, want ErrUnknownOutcome only", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v does not wrap the write's error and the last read's", err)
	}
	// Waits are at most 1s, so the budget holds over 40 reads. The wait
	// that would end past the budget is not taken, so the answer comes in
	// the budget's last second.
	sentMu.Lock()
	most, least := at.Sub(before), at.Sub(sent)
	sentMu.Unlock()
	if n := readsBack.Load(); n < 40 {
		t.Errorf("reads back = %d, want the budget's worth (over 40)", n)
	}
	if least > MaxOutcomeWait || most < MaxOutcomeWait-time.Second {
		t.Errorf("answered %v to %v after the write, want within the last second of MaxOutcomeWait (%v)", least, most, MaxOutcomeWait)
	}
	if e.attempts(resultUnknown) != 1 || e.updates.Load() != 1 {
		t.Errorf("unknown attempts %d, updates %d; want 1 and 1", e.attempts(resultUnknown), e.updates.Load())
	}
	// The write was applied: that is why the answer could not be 503.
	e.onGet = nil
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 2 {
		t.Errorf("occurrenceCount = %d, want 2", got)
	}
}

// A read back whose reads fail at once while the API server is down, and
// then hang once it accepts connections again, still answers by
// MaxOutcomeWait after the write: the budget cuts the read in flight,
// which its own deadline (readTimeout, longer than what is left of the
// budget) would end too late.
func TestReadBackCutsTheReadInFlightAtTheBudget(t *testing.T) {
	e := newEnv(t, Options{})
	if _, err := e.record(t, incident("A")); err != nil {
		t.Fatal(err)
	}
	const hangFrom = MaxOutcomeWait - 2*time.Second // less than readTimeout before the end
	var (
		mu      sync.Mutex
		sent    time.Time
		failing atomic.Bool
		hung    atomic.Int32
	)
	e.afterUpdate = func(_ client.Client, err error) error {
		mu.Lock()
		sent = e.clock.Now()
		mu.Unlock()
		failing.Store(true)
		return resetErr("Put")
	}
	getRefused := &url.Error{Op: "Get", URL: "https://apiserver/x", Err: refusedErr.Err}
	e.onGetCtx = func(ctx context.Context) error {
		if !failing.Load() {
			return nil
		}
		mu.Lock()
		late := e.clock.Now().Sub(sent) >= hangFrom
		mu.Unlock()
		if !late {
			return getRefused
		}
		hung.Add(1)
		<-ctx.Done()
		return &url.Error{Op: "Get", URL: "https://apiserver/x", Err: ctx.Err()}
	}
	_, err, at := e.recordStepping(t, context.Background(), incident("A"))
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	mu.Lock()
	elapsed := at.Sub(sent)
	mu.Unlock()
	if hung.Load() != 1 {
		t.Fatalf("%d reads hung, want 1: the test did not reach the case it is about", hung.Load())
	}
	if elapsed > MaxOutcomeWait {
		t.Errorf("answered %v after the write, past MaxOutcomeWait (%v)", elapsed, MaxOutcomeWait)
	}
	e.onGetCtx = nil // the worker is done with it
}

// An API server restart, as seen from a write in flight when the server
// was killed: the write's connection is reset, the server refuses
// connections for 5.5s, then answers 503 with Retry-After: 5 until its
// handlers are installed, then serves. The read back outlasts all that
// and learns the outcome, so the caller gets an exact answer, not
// ErrUnknownOutcome; the read after the 503 comes after the policy's wait
// (at most 1s), not after the 5s the server asked for.
func TestReadBackOutlastsAPIServerRestart(t *testing.T) {
	const down = 5500 * time.Millisecond
	for _, tc := range []struct {
		name      string
		applied   bool
		wantCount int64
		wantNotAp int
	}{
		{name: "write applied", applied: true, wantCount: 2},
		{name: "write not applied", applied: false, wantCount: 2, wantNotAp: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			first, err := e.record(t, incident("A"))
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu         sync.Mutex
				killedAt   time.Time // zero until the write was cut
				served503  time.Time
				readsAfter []time.Time // reads back after the 503
				reads      int
			)
			var once sync.Once
			kill := func() error {
				var err error
				once.Do(func() {
					mu.Lock()
					killedAt = e.clock.Now()
					mu.Unlock()
					err = resetErr("Put")
				})
				return err
			}
			if tc.applied {
				e.afterUpdate = func(_ client.Client, err error) error {
					if err != nil {
						return err
					}
					return kill()
				}
			} else {
				e.onUpdate = func(client.Object) error { return kill() }
			}
			getRefused := &url.Error{Op: "Get", URL: "https://apiserver/x", Err: refusedErr.Err}
			starting := apierrors.NewServiceUnavailable("the request has been made before all known HTTP paths have been installed, please try again")
			starting.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 5}
			e.onGet = func() error {
				mu.Lock()
				defer mu.Unlock()
				now := e.clock.Now()
				switch {
				case killedAt.IsZero():
					return nil
				case now.Before(killedAt.Add(down)):
					reads++
					return getRefused
				case served503.IsZero():
					reads++
					served503 = now
					return starting
				}
				readsAfter = append(readsAfter, now)
				return nil
			}
			res, err, _ := e.recordStepping(t, context.Background(), incident("A"))
			if err != nil {
				t.Fatalf("err = %v, want the outcome learned once the server is back", err)
			}
			if res.Outcome != Duplicate || res.OccurrenceCount != tc.wantCount {
				t.Fatalf("%+v, want duplicate with count %d", res, tc.wantCount)
			}
			e.idle(t)
			e.onGet = nil
			mu.Lock()
			defer mu.Unlock()
			if reads <= 6 {
				t.Errorf("%d failed reads back, want more than 6 (the server was down for %v)", reads, down)
			}
			if len(readsAfter) == 0 {
				t.Fatal("no read after the 503")
			}
			if wait := readsAfter[0].Sub(served503); wait > time.Second {
				t.Errorf("read again %v after the 503, want at most 1s", wait)
			}
			if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != tc.wantCount {
				t.Errorf("occurrenceCount = %d, want %d", got, tc.wantCount)
			}
			if got := e.attempts(resultNotApplied); got != tc.wantNotAp || e.attempts(resultUnknown) != 0 {
				t.Errorf("attempts: not applied %d unknown %d, want %d and 0", got, e.attempts(resultUnknown), tc.wantNotAp)
			}
		})
	}
}

func TestClassifyRead(t *testing.T) {
	bare404 := apierrors.NewGenericServerResponse(http.StatusNotFound, "GET", rrResource, "x", "404 page not found", 0, true)
	for _, tc := range []struct {
		name string
		err  error
		want readAnswer
	}{
		{"found", nil, readFound},
		{"not found", apierrors.NewNotFound(rrResource, "x"), readAbsent},
		{"wrapped not found", fmt.Errorf("get: %w", apierrors.NewNotFound(rrResource, "x")), readAbsent},
		// The mux's plain 404 for a resource not served yet.
		{"404 without a status body", bare404, readOpen},
		{"refused", refusedErr, readOpen},
		{"reset", resetErr("Get"), readOpen},
		{"deadline", context.DeadlineExceeded, readOpen},
		{"503", apierrors.NewServiceUnavailable("starting"), readOpen},
		{"429", apierrors.NewTooManyRequests("slow down", 1), readOpen},
		{"403", apierrors.NewForbidden(rrResource, "x", errors.New("no")), readOpen},
		{"401", apierrors.NewUnauthorized("who"), readOpen},
	} {
		if got := classifyRead(tc.err); got != tc.want {
			t.Errorf("%s: classifyRead(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestVerdicts(t *testing.T) {
	withID := func(ring ...string) *v1alpha1.RemediationRequest {
		rr := &v1alpha1.RemediationRequest{}
		rr.ResourceVersion = "7"
		rr.Annotations = map[string]string{v1alpha1.AnnotationWriteID: "gw-0/a-1"}
		rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: int64(1 + len(ring)), RecentWrites: ring}
		return rr
	}
	for _, tc := range []struct {
		name string
		got  *v1alpha1.RemediationRequest
		want verdict
	}{
		{"ours", withID(), applied},
		{"absent", nil, notApplied},
		{"another writer's", func() *v1alpha1.RemediationRequest {
			rr := withID()
			rr.Annotations[v1alpha1.AnnotationWriteID] = "gw-1/b-1"
			return rr
		}(), notApplied},
	} {
		if v := createVerdict(tc.got, "gw-0/a-1"); v != tc.want {
			t.Errorf("create, %s: %v, want %v", tc.name, v, tc.want)
		}
	}
	cur := withID()
	cur.ResourceVersion = "5"
	for _, tc := range []struct {
		name    string
		got     *v1alpha1.RemediationRequest
		want    verdict
		wantWhy bool
	}{
		{"id in the ring", withID("gw-0/a-2"), applied, false},
		{"deleted", nil, notApplied, false},
		{"another writer's id only", withID("gw-1/b-2"), notApplied, false},
		{"empty ring on a changed request", withID(), undecided, true},
	} {
		v, why := updateVerdict(cur, tc.got, 2, "gw-0/a-2")
		if v != tc.want || (why != nil) != tc.wantWhy {
			t.Errorf("update, %s: %v (%v), want %v", tc.name, v, why, tc.want)
		}
	}
}

// An update's id leaves the ring after MaxRecentWrites later updates; an
// absent id then proves nothing, and the count tells when that can be.
func TestRingOverflowRule(t *testing.T) {
	for _, tc := range []struct {
		name         string
		applied      bool // our update reached storage before its answer was lost
		others       int  // other replicas' updates before the read back
		wantErr      error
		wantCount    int64 // answered
		wantInStore  int64
		wantNotAppld int
	}{
		// Our update set the count to 2; 15 more leave its id in the ring.
		{name: "applied, 15 later writes", applied: true, others: 15, wantCount: 2, wantInStore: 17},
		// 16 more push it out, and the count (18) reaches 2 + 16.
		{name: "applied, 16 later writes", applied: true, others: 16, wantErr: ErrUnknownOutcome, wantInStore: 18},
		// Not applied, 16 others: the count is 17, below 2 + 16, so the
		// absent id proves it was not applied; retried once.
		{name: "not applied, 16 other writes", others: 16, wantCount: 18, wantInStore: 18, wantNotAppld: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			first, err := e.record(t, incident("A"))
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			others := func() {
				for i := range tc.others {
					bump(t, e.inner, first.Name, fmt.Sprintf("gw-1/00000000-%d", i+1))
				}
			}
			if tc.applied {
				e.afterUpdate = func(_ client.Client, err error) error {
					if err != nil {
						return err
					}
					once.Do(func() { others(); err = resetErr("Put") })
					return err
				}
			} else {
				e.onUpdate = func(client.Object) error {
					var err error
					once.Do(func() { others(); err = resetErr("Put") })
					return err
				}
			}
			res, err := e.record(t, incident("A"))
			checkReadBack(t, e, first.Name, res, err, tc.wantErr, tc.wantCount, tc.wantInStore, tc.wantNotAppld)
		})
	}
}

// A refused connection sent nothing: the error is definite, no read back.
func TestRefusedConnectionIsDefinite(t *testing.T) {
	e := newEnv(t, Options{})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	e.onUpdate = func(client.Object) error { return refusedErr }
	gets := e.gets.Load()
	_, err = e.record(t, incident("A"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := e.gets.Load() - gets; n != 1 {
		t.Errorf("gets = %d, want 1 (the attempt's read, no read back)", n)
	}
	if e.attempts(resultError) != 1 || e.updates.Load() != 1 {
		t.Errorf("error attempts %d, updates %d; want 1 and 1", e.attempts(resultError), e.updates.Load())
	}
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Errorf("occurrenceCount = %d, want 1", got)
	}
}

// A caller whose context ends while the write counting its incident is in
// flight waits for that write's answer: the real one, not a guess.
func TestCallerWaitsForWriteInFlight(t *testing.T) {
	for _, tc := range []struct {
		name      string
		writeErr  error
		wantErr   error
		wantCount int64
	}{
		{name: "applied", wantCount: 2},
		{name: "conflict", writeErr: apierrors.NewConflict(rrResource, "x", errors.New("changed")), wantErr: ErrNotRecorded, wantCount: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			first, err := e.record(t, incident("A"))
			if err != nil {
				t.Fatal(err)
			}
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			e.onUpdate = func(client.Object) error {
				var err error
				once.Do(func() {
					close(entered)
					<-release
					err = tc.writeErr
				})
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			type out struct {
				res Result
				err error
			}
			done := make(chan out, 1)
			go func() {
				res, err := e.rec.Record(ctx, incident("A"))
				done <- out{res, err}
			}()
			<-entered // the incident is taken: its write is in flight
			cancel()
			select {
			case o := <-done:
				t.Fatalf("Record returned (%+v, %v) while its write was in flight", o.res, o.err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			o := <-done
			switch {
			case tc.wantErr == nil && (o.err != nil || o.res != (Result{Outcome: Duplicate, Name: first.Name, OccurrenceCount: 2})):
				t.Fatalf("%+v, %v; want duplicate with count 2", o.res, o.err)
			case tc.wantErr != nil && (!errors.Is(o.err, tc.wantErr) || !errors.Is(o.err, context.Canceled)):
				t.Fatalf("err = %v, want %v and context.Canceled", o.err, tc.wantErr)
			}
			waitFor(t, func() bool {
				if e.clock.HasWaiters() {
					e.clock.Step(2 * time.Second)
				}
				e.rec.mu.Lock()
				defer e.rec.mu.Unlock()
				return len(e.rec.groups) == 0
			})
			if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != tc.wantCount {
				t.Errorf("occurrenceCount = %d, want %d", got, tc.wantCount)
			}
		})
	}
}

// A caller whose deadline passes before its incident is taken is not
// counted, and says so.
func TestCallerDeadlineBeforeWriteIsNotRecorded(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	in := incident("A")
	e.locks.Hold(in.Fingerprint)
	ctx, expire := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.rec.Record(ctx, in)
		done <- err
	}()
	waitFor(t, func() bool { return e.attempts(resultHeld) >= 1 })
	expire(context.DeadlineExceeded) // as the request's deadline would
	if err := <-done; !errors.Is(err, ErrNotRecorded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNotRecorded and context.DeadlineExceeded", err)
	}
	e.locks.Free(in.Fingerprint)
	waitFor(t, func() bool {
		if e.clock.HasWaiters() {
			e.clock.Step(2 * time.Second)
		}
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return len(e.rec.groups) == 0
	})
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Fatalf("occurrenceCount = %d, want 1", got)
	}
	if e.updates.Load() != 0 {
		t.Fatalf("updates = %d, want 0", e.updates.Load())
	}
}

// Every write carries an id: the create in an annotation, each update in
// the ring of recent writes, which keeps the newest MaxRecentWrites.
func TestWriteIDs(t *testing.T) {
	e := newEnv(t, Options{Identity: "gw-0"})
	const n = 20
	for range n {
		if _, err := e.record(t, incident("A")); err != nil {
			t.Fatal(err)
		}
	}
	rr := e.get(t, Name("rr", incident("A").Fingerprint, 1))
	prefix := "gw-0/" + e.rec.nonce + "-"
	if got := rr.Annotations[v1alpha1.AnnotationWriteID]; got != prefix+"1" {
		t.Errorf("create write id = %q, want %q", got, prefix+"1")
	}
	ring := rr.EffectiveDeduplication().RecentWrites
	if len(ring) != v1alpha1.MaxRecentWrites {
		t.Fatalf("recent writes = %d, want %d", len(ring), v1alpha1.MaxRecentWrites)
	}
	// Writes 2..20 were updates; the ring holds the newest 16, newest last.
	for i, id := range ring {
		if want := fmt.Sprintf("%s%d", prefix, n-v1alpha1.MaxRecentWrites+1+i); id != want {
			t.Errorf("ring[%d] = %q, want %q", i, id, want)
		}
	}
	if len(e.rec.nonce) != 8 {
		t.Errorf("random part %q is not 8 hex digits", e.rec.nonce)
	}
}

func TestAppendWrite(t *testing.T) {
	var ring []string
	for i := range v1alpha1.MaxRecentWrites {
		ring = appendWrite(ring, fmt.Sprint(i))
	}
	if len(ring) != v1alpha1.MaxRecentWrites || ring[0] != "0" {
		t.Fatalf("ring = %v", ring)
	}
	full := slices.Clone(ring)
	next := appendWrite(ring, "new")
	if len(next) != v1alpha1.MaxRecentWrites || next[0] != "1" || next[len(next)-1] != "new" {
		t.Fatalf("after one more: %v, want 1..15 then new", next)
	}
	if !slices.Equal(ring, full) {
		t.Fatalf("appendWrite changed its input: %v", ring)
	}
	if got := strings.Join(appendWrite(nil, "a"), ","); got != "a" {
		t.Fatalf("empty ring: %q", got)
	}
}

// Deployments size their shutdown grace with MaxOutcomeWait (42.5s); a
// change must show up here first.
func TestMaxOutcomeWait(t *testing.T) {
	if MaxOutcomeWait != 42500*time.Millisecond {
		t.Fatalf("MaxOutcomeWait = %v", MaxOutcomeWait)
	}
	if time.Duration(maxReadsBack)*readBackMinWait < MaxOutcomeWait {
		t.Fatalf("maxReadsBack %d would end a read back before its budget", maxReadsBack)
	}
}

// MaxOutcomeWait bounds a caller whose context ended while its incident
// was in a write, however long the API server takes: the write and every
// read back end at their own deadlines on the Recorder's clock.
func TestOutcomeWaitIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		readsHang  bool
		wantErr    error
		wantReads  int32
		minElapsed time.Duration
	}{
		// The write and every read hang: the whole budget is spent, and
		// the outcome is unknown. With the longest waits the jitter
		// allows (100ms, 300ms, 900ms, then 1s), reads at 10s, 15.1s,
		// 20.4s, 26.3s, 32.3s and 38.3s after the write, the last one cut
		// at the budget's end.
		{name: "nothing answers", readsHang: true, wantErr: ErrUnknownOutcome, wantReads: 6,
			minElapsed: MaxOutcomeWait},
		// The write hangs, the first read back shows it was not applied:
		// the caller, gone, is told it was not counted. Two reads: that
		// one and the next attempt's, which finds nothing left to count.
		{name: "write hangs", wantErr: ErrNotRecorded, wantReads: 2, minElapsed: writeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{Rand: constantRand(1)})
			first, err := e.record(t, incident("A"))
			if err != nil {
				t.Fatal(err)
			}
			entered := make(chan struct{})
			var inWrite atomic.Bool
			var readsBack atomic.Int32
			e.onWriteCtx = func(ctx context.Context) error {
				inWrite.Store(true)
				close(entered)
				<-ctx.Done()
				return &url.Error{Op: "Put", URL: "https://apiserver/x", Err: ctx.Err()}
			}
			e.onGetCtx = func(ctx context.Context) error {
				if !inWrite.Load() {
					return nil
				}
				readsBack.Add(1)
				if !tc.readsHang {
					return nil
				}
				<-ctx.Done()
				return &url.Error{Op: "Get", URL: "https://apiserver/x", Err: ctx.Err()}
			}
			ctx, cancel := context.WithCancel(context.Background())
			type out struct {
				err error
				at  time.Time
			}
			done := make(chan out, 1)
			go func() {
				_, err := e.rec.Record(ctx, incident("A"))
				done <- out{err, e.clock.Now()}
			}()
			<-entered // taken into the write: the caller must wait for it
			cancel()
			start := e.clock.Now()
			var o out
			waitFor(t, func() bool {
				select {
				case o = <-done:
					return true
				default:
					// Steps that divide every deadline and wait, so that
					// none is overshot.
					if e.clock.HasWaiters() {
						e.clock.Step(100 * time.Millisecond)
					}
					return false
				}
			})
			if !errors.Is(o.err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", o.err, tc.wantErr)
			}
			if !errors.Is(o.err, context.DeadlineExceeded) && !errors.Is(o.err, context.Canceled) {
				t.Errorf("err = %v names no deadline", o.err)
			}
			elapsed := o.at.Sub(start)
			if elapsed > MaxOutcomeWait || elapsed < tc.minElapsed {
				t.Errorf("Record returned %v after its context ended, want between %v and MaxOutcomeWait (%v)",
					elapsed, tc.minElapsed, MaxOutcomeWait)
			}
			waitFor(t, func() bool {
				if e.clock.HasWaiters() {
					e.clock.Step(100 * time.Millisecond)
				}
				e.rec.mu.Lock()
				defer e.rec.mu.Unlock()
				return len(e.rec.groups) == 0
			})
			e.onGetCtx = nil // the worker is gone
			if n := readsBack.Load(); n != tc.wantReads {
				t.Errorf("reads back = %d, want %d", n, tc.wantReads)
			}
			if e.updates.Load() != 1 {
				t.Errorf("updates = %d, want 1", e.updates.Load())
			}
			if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
				t.Errorf("occurrenceCount = %d, want 1", got)
			}
		})
	}
}

// With a CRD that predates status.deduplication.recentWrites, the API
// server drops the ring: an update that was applied reads back exactly
// like one that was not. The outcome is then unknown unless the request
// did not change at all since the update's read.
func TestPrunedRecentWrites(t *testing.T) {
	prune := func(obj client.Object) {
		if d := obj.(*v1alpha1.RemediationRequest).Status.Deduplication; d != nil {
			d.RecentWrites = nil
		}
	}
	for _, tc := range []struct {
		name         string
		applied      bool // our update reached storage before its answer was lost
		other        bool // another writer's update landed before the read back
		wantErr      error
		wantCount    int64
		wantInStore  int64
		wantNotAppld int
	}{
		// Applied, answer lost: the count changed and the ring is empty.
		// Retrying would count the signal twice.
		{name: "applied", applied: true, wantErr: ErrUnknownOutcome, wantInStore: 2},
		// Not applied and nothing changed: provably not applied; retried.
		{name: "not applied, request unchanged", wantCount: 2, wantInStore: 2, wantNotAppld: 1},
		// Not applied, but another writer changed the request: it reads
		// like the first case, so the answer cannot be "not counted".
		{name: "not applied, another write", other: true, wantErr: ErrUnknownOutcome, wantInStore: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			first, err := e.record(t, incident("A"))
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			e.onUpdate = func(obj client.Object) error {
				prune(obj)
				var err error
				if !tc.applied {
					once.Do(func() {
						if tc.other {
							rr := e.get(t, first.Name)
							d := rr.EffectiveDeduplication()
							d.OccurrenceCount++
							rr.Status.Deduplication = &d
							if err := e.inner.Status().Update(context.Background(), rr); err != nil {
								t.Error(err)
							}
						}
						err = resetErr("Put")
					})
				}
				return err
			}
			if tc.applied {
				e.afterUpdate = func(_ client.Client, err error) error {
					if err == nil {
						once.Do(func() { err = resetErr("Put") })
					}
					return err
				}
			}
			res, err := e.record(t, incident("A"))
			checkReadBack(t, e, first.Name, res, err, tc.wantErr, tc.wantCount, tc.wantInStore, tc.wantNotAppld)
		})
	}
}

// checkReadBack checks one Record whose write was read back: its error or
// its answered count, the count in store, and the attempts that found the
// write not applied.
func checkReadBack(t *testing.T, e *env, name string, res Result, err, wantErr error, wantCount, wantInStore int64, wantNotApplied int) {
	t.Helper()
	switch {
	case wantErr != nil && !errors.Is(err, wantErr):
		t.Fatalf("err = %v, want %v", err, wantErr)
	case wantErr == nil && err != nil:
		t.Fatal(err)
	case wantErr == nil && res.OccurrenceCount != wantCount:
		t.Fatalf("answered count %d, want %d", res.OccurrenceCount, wantCount)
	}
	if got := e.get(t, name).EffectiveDeduplication().OccurrenceCount; got != wantInStore {
		t.Errorf("occurrenceCount = %d, want %d", got, wantInStore)
	}
	if got := e.attempts(resultNotApplied); got != wantNotApplied {
		t.Errorf("not applied attempts = %d, want %d", got, wantNotApplied)
	}
}
