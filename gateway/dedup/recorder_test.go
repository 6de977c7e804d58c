package dedup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/signal"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

const testNS = "gw"

var rrResource = schema.GroupResource{Group: "leasehold.dev", Resource: "remediationrequests"}

// env is one Recorder over a fake API server, with call counts and a
// hook per verb for injecting failures.
type env struct {
	rec   *Recorder
	c     client.Client
	inner client.Client // the fake behind c, without the hooks
	locks *leasetest.Fake
	clock *clocktesting.FakeClock
	reg   *prometheus.Registry

	gets, lists, creates, updates atomic.Int32

	// Hooks run before the fake serves a call; a non-nil error is returned
	// instead. They run on the worker goroutine.
	onCreate func(inner client.WithWatch, obj client.Object) error
	onUpdate func(obj client.Object) error
	onList   func() error
	onGet    func() error
	// Context hooks run first, with the call's context, so that a call
	// can block until its deadline: onWriteCtx for creates and status
	// updates, onGetCtx for gets.
	onWriteCtx func(ctx context.Context) error
	onGetCtx   func(ctx context.Context) error
	// After-hooks run once the fake served a write, with its error; they
	// return the error the Recorder sees, so that a write can be applied
	// and its answer lost.
	afterCreate func(inner client.WithWatch, err error) error
	afterUpdate func(inner client.Client, err error) error
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	e := &env{clock: clocktesting.NewFakeClock(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)), reg: prometheus.NewRegistry()}
	inner := fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.RemediationRequest{}).Build()
	e.inner = inner
	e.c = interceptor.NewClient(inner, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			e.gets.Add(1)
			if e.onGetCtx != nil {
				if err := e.onGetCtx(ctx); err != nil {
					return err
				}
			}
			if e.onGet != nil {
				if err := e.onGet(); err != nil {
					return err
				}
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			e.lists.Add(1)
			if e.onList != nil {
				if err := e.onList(); err != nil {
					return err
				}
			}
			return c.List(ctx, list, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			e.creates.Add(1)
			if e.onWriteCtx != nil {
				if err := e.onWriteCtx(ctx); err != nil {
					return err
				}
			}
			if e.onCreate != nil {
				if err := e.onCreate(c, obj); err != nil {
					return err
				}
			}
			err := c.Create(ctx, obj, opts...)
			if e.afterCreate != nil {
				err = e.afterCreate(c, err)
			}
			return err
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			e.updates.Add(1)
			if e.onWriteCtx != nil {
				if err := e.onWriteCtx(ctx); err != nil {
					return err
				}
			}
			if e.onUpdate != nil {
				if err := e.onUpdate(obj); err != nil {
					return err
				}
			}
			err := c.Status().Update(ctx, obj, opts...)
			if e.afterUpdate != nil {
				err = e.afterUpdate(c, err)
			}
			return err
		},
	})
	e.locks = leasetest.New(t, lease.Options{})
	opts.Namespace = testNS
	opts.Clock = e.clock
	opts.Registerer = e.reg
	rec, err := New(e.c, e.locks, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.rec = rec
	return e
}

// record runs Record to completion, stepping the fake clock whenever the
// worker waits, so backoff waits pass without real time.
func (e *env) record(t *testing.T, in Incident) (Result, error) {
	t.Helper()
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := e.rec.Record(context.Background(), in)
		done <- out{res, err}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case o := <-done:
			e.idle(t)
			return o.res, o.err
		case <-deadline:
			t.Fatal("Record did not return")
		case <-time.After(time.Millisecond):
			if e.clock.HasWaiters() {
				e.clock.Step(2 * time.Second)
			}
		}
	}
}

// idle waits until no worker runs, so that the metrics of the last
// attempt are in.
func (e *env) idle(t *testing.T) {
	t.Helper()
	waitFor(t, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return len(e.rec.groups) == 0
	})
}

func (e *env) get(t *testing.T, name string) *v1alpha1.RemediationRequest {
	t.Helper()
	var rr v1alpha1.RemediationRequest
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: testNS, Name: name}, &rr); err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return &rr
}

func (e *env) setPhase(t *testing.T, name string, phase v1alpha1.RemediationPhase) {
	t.Helper()
	rr := e.get(t, name)
	rr.Status.Phase = phase
	if err := e.c.Status().Update(context.Background(), rr); err != nil {
		t.Fatal(err)
	}
}

func (e *env) attempts(result string) int {
	return int(testutil.ToFloat64(e.rec.m.attempts.WithLabelValues(result)))
}

func incident(name string) Incident {
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "cart"}
	return Incident{
		Fingerprint:  Fingerprint(target),
		Target:       target,
		SignalTarget: v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "cart-7d9f-x2"},
		Signal: signal.Signal{
			Source: v1alpha1.SourceAlertmanager, Name: name, Severity: "critical",
			Target: v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "cart-7d9f-x2"},
			Labels: map[string]string{"alertname": name},
		},
		ReceivedAt: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC),
	}
}

func TestFirstSignalCreatesWithoutLock(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates})
	in := incident("KubePodCrashLooping")
	res, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := Name("rr", in.Fingerprint, 1)
	if res != (Result{Outcome: Created, Name: want, OccurrenceCount: 1}) {
		t.Fatalf("result = %+v, want created %s with count 1", res, want)
	}
	rr := e.get(t, want)
	if rr.Spec.Fingerprint != in.Fingerprint || rr.Spec.Target != in.Target || rr.Spec.SignalTarget != in.SignalTarget {
		t.Errorf("spec = %+v", rr.Spec)
	}
	for k, v := range map[string]string{
		v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(in.Fingerprint),
		v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(in.Target),
		v1alpha1.LabelGeneration:  "1",
	} {
		if rr.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, rr.Labels[k], v)
		}
	}
	if _, ok := rr.Annotations[v1alpha1.AnnotationFencingToken]; ok {
		t.Error("a create without lock recorded a fencing token")
	}
	if got := e.locks.Acquisitions(in.Fingerprint); got != 0 {
		t.Errorf("lock acquisitions = %d, want 0 on the create fast path", got)
	}
	if e.lists.Load() != 1 || e.creates.Load() != 1 || e.updates.Load() != 0 {
		t.Errorf("calls: list %d create %d update %d, want 1/1/0", e.lists.Load(), e.creates.Load(), e.updates.Load())
	}
	if n := e.attempts(resultWritten); n != 1 {
		t.Errorf("written attempts = %d, want 1 (no retry when free)", n)
	}
	if rr.EffectiveDeduplication().OccurrenceCount != 1 {
		t.Errorf("count = %d", rr.EffectiveDeduplication().OccurrenceCount)
	}
}

func TestLockAllRecordsFencingToken(t *testing.T) {
	e := newEnv(t, Options{Lock: LockAll})
	in := incident("A")
	res, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.locks.Acquisitions(in.Fingerprint); got != 1 {
		t.Fatalf("lock acquisitions = %d, want 1", got)
	}
	if tok := e.get(t, res.Name).Annotations[v1alpha1.AnnotationFencingToken]; tok == "" {
		t.Fatal("no fencing token recorded")
	}
}

func TestDuplicateCountsUnderLock(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	second := incident("B")
	second.ReceivedAt = second.ReceivedAt.Add(time.Minute)
	res, err := e.record(t, second)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Outcome: Duplicate, Name: first.Name, OccurrenceCount: 2}) {
		t.Fatalf("result = %+v", res)
	}
	// The second read hit the cached name: one Get, no second List.
	if e.lists.Load() != 1 || e.gets.Load() != 1 {
		t.Errorf("reads: list %d get %d, want 1/1", e.lists.Load(), e.gets.Load())
	}
	d := e.get(t, first.Name).EffectiveDeduplication()
	if d.OccurrenceCount != 2 || !d.LastSeenAt.Time.Equal(second.ReceivedAt) || !d.FirstSeenAt.Time.Equal(incident("A").ReceivedAt) {
		t.Errorf("deduplication = %+v", d)
	}
	if strings.Join(d.SignalNames, ",") != "A,B" {
		t.Errorf("signal names = %v, want [A B]", d.SignalNames)
	}
	if got := e.locks.Acquisitions(second.Fingerprint); got != 1 {
		t.Errorf("lock acquisitions = %d, want 1 for the update", got)
	}
}

func TestDefaultTakesNoLock(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident("A")
	for range 3 {
		if _, err := e.record(t, in); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.locks.Acquisitions(in.Fingerprint); got != 0 {
		t.Fatalf("lock acquisitions = %d, want 0 by default", got)
	}
	// Locks held elsewhere do not matter: updates are fenced by their
	// resourceVersion.
	e.locks.Hold(in.Fingerprint)
	res, err := e.record(t, in)
	if err != nil || res.OccurrenceCount != 4 {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestSignalNamesAreBounded(t *testing.T) {
	e := newEnv(t, Options{})
	for i := range v1alpha1.MaxSignalNames + 4 {
		if _, err := e.record(t, incident(fmt.Sprintf("Alert%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	d := e.get(t, Name("rr", incident("x").Fingerprint, 1)).EffectiveDeduplication()
	if len(d.SignalNames) != v1alpha1.MaxSignalNames || d.OccurrenceCount != v1alpha1.MaxSignalNames+4 {
		t.Fatalf("names %d count %d", len(d.SignalNames), d.OccurrenceCount)
	}
}

func TestTerminalRequestStartsNextGeneration(t *testing.T) {
	e := newEnv(t, Options{})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	e.setPhase(t, first.Name, v1alpha1.PhaseCompleted)
	res, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	if want := Name("rr", incident("A").Fingerprint, 2); res.Outcome != Created || res.Name != want {
		t.Fatalf("result = %+v, want created %s", res, want)
	}
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Errorf("terminal request count changed to %d", got)
	}
}

// Concurrent identical incidents of one process share one write: the first
// create counts one, one status update counts all the others.
func TestConcurrentIdenticalIncidentsShareWrites(t *testing.T) {
	e := newEnv(t, Options{})
	const n = 50
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.onList = func() error {
		select {
		case entered <- struct{}{}:
			<-release // hold the first attempt until every caller is queued
		default:
		}
		return nil
	}
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0], errs[0] = e.rec.Record(context.Background(), incident("A"))
	}()
	<-entered
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.rec.Record(context.Background(), incident("A"))
		}()
	}
	waitFor(t, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		g := e.rec.groups[incident("A").Fingerprint]
		return g != nil && len(g.pending) == n
	})
	close(release)
	wg.Wait()

	created, dup := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		switch results[i].Outcome {
		case Created:
			created++
		case Duplicate:
			dup++
			if results[i].OccurrenceCount != n {
				t.Errorf("caller %d count = %d, want %d", i, results[i].OccurrenceCount, n)
			}
		}
	}
	if created != 1 || dup != n-1 {
		t.Fatalf("created %d duplicate %d, want 1 and %d", created, dup, n-1)
	}
	if got := e.get(t, results[0].Name).EffectiveDeduplication().OccurrenceCount; got != n {
		t.Fatalf("occurrenceCount = %d, want %d", got, n)
	}
	if e.creates.Load() != 1 || e.updates.Load() != 1 {
		t.Fatalf("writes: create %d update %d, want 1 and 1", e.creates.Load(), e.updates.Load())
	}
}

// Another replica creates the request between this replica's read and its
// create: the create fails with AlreadyExists, and the next attempt, with
// no wait, counts into that request.
func TestAnotherReplicaCreatedItMeanwhile(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident("A")
	var once sync.Once
	e.onCreate = func(inner client.WithWatch, obj client.Object) error {
		var err error
		once.Do(func() {
			other := obj.DeepCopyObject().(*v1alpha1.RemediationRequest)
			if cerr := inner.Create(context.Background(), other); cerr != nil {
				t.Errorf("create the other replica's request: %v", cerr)
			}
			err = apierrors.NewAlreadyExists(rrResource, obj.GetName())
		})
		return err
	}
	res, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != Duplicate || res.OccurrenceCount != 2 {
		t.Fatalf("result = %+v, want duplicate with count 2", res)
	}
	if e.attempts(resultExists) != 1 || e.attempts(resultWritten) != 1 {
		t.Errorf("attempts: exists %d written %d", e.attempts(resultExists), e.attempts(resultWritten))
	}
	if n := testutil.CollectAndCount(e.rec.m.backoff); n != 1 {
		t.Errorf("backoff series = %d", n)
	}
	if got := testutil.ToFloat64(e.rec.m.successes); got != 1 {
		t.Errorf("eventual successes = %v, want 1", got)
	}
}

func TestHeldLockExhaustsExactlyMaxAttempts(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates, MaxAttempts: 4})
	if _, err := e.record(t, incident("A")); err != nil {
		t.Fatal(err)
	}
	in := incident("A")
	e.locks.Hold(in.Fingerprint)
	_, err := e.record(t, in)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if !strings.Contains(err.Error(), in.Fingerprint) {
		t.Errorf("error %q does not name the fingerprint", err)
	}
	if got := e.attempts(resultHeld); got != 4 {
		t.Errorf("held attempts = %d, want 4", got)
	}
	if got := testutil.ToFloat64(e.rec.m.exhausted); got != 1 {
		t.Errorf("exhausted = %v", got)
	}
	if got := e.get(t, Name("rr", in.Fingerprint, 1)).EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Errorf("count = %d after a failed signal, want 1", got)
	}

	// Once the other holder lets go, the next signal is counted.
	e.locks.Free(in.Fingerprint)
	res, err := e.record(t, in)
	if err != nil || res.OccurrenceCount != 2 {
		t.Fatalf("after Free: %+v, %v", res, err)
	}
}

func TestAPIErrorCostsOneAttempt(t *testing.T) {
	e := newEnv(t, Options{})
	e.onList = func() error { return apierrors.NewServiceUnavailable("etcd is down") }
	_, err := e.record(t, incident("A"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if e.lists.Load() != 1 || e.attempts(resultError) != 1 {
		t.Fatalf("lists %d, error attempts %d; want 1 and 1", e.lists.Load(), e.attempts(resultError))
	}
}

func TestConflictRetriesAfterBackoff(t *testing.T) {
	e := newEnv(t, Options{})
	if _, err := e.record(t, incident("A")); err != nil {
		t.Fatal(err)
	}
	var conflicts atomic.Int32
	e.onUpdate = func(obj client.Object) error {
		if conflicts.Add(1) == 1 {
			return apierrors.NewConflict(rrResource, obj.GetName(), errors.New("changed"))
		}
		return nil
	}
	res, err := e.record(t, incident("A"))
	if err != nil || res.OccurrenceCount != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	if e.attempts(resultConflict) != 1 {
		t.Errorf("conflict attempts = %d", e.attempts(resultConflict))
	}
	if n := testutil.CollectAndCount(e.rec.m.backoff); n != 1 {
		t.Errorf("backoff series = %d, want one (attempt 1)", n)
	}
}

// A caller that gives up before its incident was taken into a write is
// not counted.
func TestCallerThatLeavesIsNotCounted(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	in := incident("A")
	e.locks.Hold(in.Fingerprint)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.rec.Record(ctx, in)
		done <- err
	}()
	waitFor(t, func() bool { return e.attempts(resultHeld) >= 1 })
	cancel()
	if err := <-done; !errors.Is(err, ErrNotRecorded) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrNotRecorded and context.Canceled", err)
	}
	e.locks.Free(in.Fingerprint)
	// The worker wakes from its wait, finds nobody left and stops.
	waitFor(t, func() bool {
		if e.clock.HasWaiters() {
			e.clock.Step(2 * time.Second)
		}
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return len(e.rec.groups) == 0
	})
	if got := e.get(t, first.Name).EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Fatalf("count = %d, want 1", got)
	}
}

func TestLostLockIsNotWrittenUnder(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates, CriticalSectionDelay: time.Second})
	if _, err := e.record(t, incident("A")); err != nil {
		t.Fatal(err)
	}
	in := incident("A")
	var lost atomic.Bool
	e.onUpdate = func(client.Object) error {
		if !lost.Load() {
			t.Error("updated under a lost lock")
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.rec.Record(context.Background(), in)
		done <- err
	}()
	// The worker is inside its critical section (waiting on the delay).
	waitFor(t, func() bool { return e.locks.Acquisitions(in.Fingerprint) == 1 && e.clock.HasWaiters() })
	if !e.locks.ForceLoss(in.Fingerprint) {
		t.Fatal("no lock to lose")
	}
	lost.Store(true)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if e.attempts(resultLost) != 1 {
				t.Fatalf("lost attempts = %d, want 1", e.attempts(resultLost))
			}
			return
		case <-time.After(time.Millisecond):
			if e.clock.HasWaiters() {
				e.clock.Step(2 * time.Second)
			}
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	c := fake.NewClientBuilder().Build()
	locks := leasetest.New(t, lease.Options{})
	for name, opts := range map[string]Options{
		"no namespace":    {},
		"bad namespace":   {Namespace: "Bad_NS"},
		"long prefix":     {Namespace: "a", NamePrefix: strings.Repeat("r", 21)},
		"bad lock mode":   {Namespace: "a", Lock: "sometimes"},
		"negative delay":  {Namespace: "a", CriticalSectionDelay: -time.Second},
		"negative budget": {Namespace: "a", MaxAttempts: -1},
		"long identity":   {Namespace: "a", Identity: strings.Repeat("g", 254)},
	} {
		if _, err := New(c, locks, opts); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
	if _, err := New(c, nil, Options{Namespace: "a"}); err == nil {
		t.Error("New accepted a nil locker")
	}
	if _, err := New(c, locks, Options{Namespace: "a"}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestRecordRejectsMalformedFingerprint(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident("A")
	in.Fingerprint = "abc"
	if _, err := e.rec.Record(context.Background(), in); err == nil {
		t.Fatal("accepted a short fingerprint")
	}
}

func TestFingerprint(t *testing.T) {
	base := v1alpha1.TargetRef{Cluster: "c", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web"}
	fp := Fingerprint(base)
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("fingerprint %q is not 64 lowercase hex digits", fp)
	}
	v2 := base
	v2.APIVersion = "apps/v2"
	if Fingerprint(v2) != fp {
		t.Error("the API version changed the fingerprint")
	}
	for _, other := range []v1alpha1.TargetRef{
		{Cluster: "c", APIVersion: "example.com/v1", Kind: "Deployment", Namespace: "ns", Name: "web"},
		{Cluster: "c", APIVersion: "v1", Kind: "Deployment", Namespace: "ns", Name: "web"},
		{Cluster: "c2", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web"},
		{Cluster: "c", APIVersion: "apps/v1", Kind: "StatefulSet", Namespace: "ns", Name: "web"},
		{Cluster: "c", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns2", Name: "web"},
		{Cluster: "c", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web2"},
		{Cluster: "c", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "nsw", Name: "eb"},
	} {
		if Fingerprint(other) == fp {
			t.Errorf("%v has the same fingerprint as %v", other, base)
		}
	}
}

// A core Service and a Knative Service of one name are two workloads, and
// must not be counted into one request; two versions of one group's API
// name the same object.
func TestFingerprintTellsGroupsApart(t *testing.T) {
	core := v1alpha1.TargetRef{Cluster: "c", APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "cart"}
	knative := core
	knative.APIVersion = "serving.knative.dev/v1"
	if Fingerprint(core) == Fingerprint(knative) {
		t.Errorf("%s and %s share the fingerprint %s", core.APIVersion, knative.APIVersion, Fingerprint(core))
	}
	older := knative
	older.APIVersion = "serving.knative.dev/v1beta1"
	if Fingerprint(older) != Fingerprint(knative) {
		t.Errorf("%s and %s of one object have different fingerprints", older.APIVersion, knative.APIVersion)
	}
}

// The name fences creates, so two fingerprints must never share one: a
// fingerprint whose name another one took would never get a request.
func TestNameCarriesTheWholeFingerprint(t *testing.T) {
	a := strings.Repeat("0", 20) + strings.Repeat("a", 44)
	b := strings.Repeat("0", 20) + strings.Repeat("b", 44)
	if Name("rr", a, 1) == Name("rr", b, 1) {
		t.Fatalf("fingerprints sharing their first 20 hex digits share the name %s", Name("rr", a, 1))
	}
	if got, want := Name("rr", a, 7), "rr-"+a+"-7"; got != want {
		t.Fatalf("Name = %q, want %q", got, want)
	}
	// The longest prefix Options accept and the largest generation still
	// make a valid object name.
	longest := Name(strings.Repeat("r", 20), a, math.MaxInt64)
	if msgs := validation.IsDNS1123Subdomain(longest); len(msgs) > 0 {
		t.Fatalf("name %q: %v", longest, msgs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// A batch that runs out of attempts fails only the incidents an attempt
// saw; one that joined during the last attempt gets a loop of its own.
func TestExhaustionSparesIncidentsThatJoinedLate(t *testing.T) {
	e := newEnv(t, Options{Lock: LockUpdates, MaxAttempts: 2})
	first, err := e.record(t, incident("A"))
	if err != nil {
		t.Fatal(err)
	}
	fp := incident("A").Fingerprint
	e.locks.Hold(fp)
	var reads atomic.Int32
	inLast := make(chan struct{})
	proceed := make(chan struct{})
	e.onGet = func() error {
		if reads.Add(1) == 2 { // the read of the last attempt
			close(inLast)
			<-proceed
		}
		return nil
	}
	early := make(chan error, 1)
	go func() {
		_, err := e.rec.Record(context.Background(), incident("A"))
		early <- err
	}()
	waitFor(t, func() bool {
		select {
		case <-inLast:
			return true
		default:
			if e.clock.HasWaiters() {
				e.clock.Step(2 * time.Second)
			}
			return false
		}
	})
	late := make(chan Result, 1)
	go func() {
		res, err := e.rec.Record(context.Background(), incident("A"))
		if err != nil {
			t.Errorf("late incident: %v", err)
		}
		late <- res
	}()
	waitFor(t, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return len(e.rec.groups[fp].pending) == 2
	})
	e.onGet = nil
	close(proceed)
	if err := <-early; !errors.Is(err, ErrBusy) {
		t.Fatalf("early incident: %v, want ErrBusy", err)
	}
	e.locks.Free(fp)
	var res Result
	waitFor(t, func() bool {
		if e.clock.HasWaiters() {
			e.clock.Step(2 * time.Second)
		}
		select {
		case res = <-late:
			return true
		default:
			return false
		}
	})
	if res.Outcome != Duplicate || res.Name != first.Name || res.OccurrenceCount != 2 {
		t.Fatalf("late incident: %+v", res)
	}
}

func TestCloseWaitsForWorkersAndRefusesNewIncidents(t *testing.T) {
	e := newEnv(t, Options{})
	release := make(chan struct{})
	e.onList = func() error {
		<-release
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.rec.Record(context.Background(), incident("A"))
		done <- err
	}()
	waitFor(t, func() bool { return e.lists.Load() == 1 })

	closed := make(chan error, 1)
	go func() { closed <- e.rec.Close(context.Background()) }()
	waitFor(t, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return e.rec.closed
	})
	if _, err := e.rec.Record(context.Background(), incident("B")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Record after Close = %v, want ErrClosed and ErrUnavailable", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a worker was writing", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	if err := e.rec.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
