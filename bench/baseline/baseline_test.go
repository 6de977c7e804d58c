package baseline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/signal"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

const (
	testNS = "gw"
	me     = "gw-0"
	other  = "gw-1"
)

var rrResource = schema.GroupResource{Group: "leasehold.dev", Resource: "remediationrequests"}

// env is one Dedup over a fake API server: the controller-runtime fake for
// RemediationRequests, leasetest's clientset (real resourceVersion
// semantics) for Leases. Hooks run before the fake serves a call; a non-nil
// error is returned instead.
type env struct {
	d      *Dedup
	c      client.Client
	leases coordinationv1client.LeaseInterface // unhooked, for the test's own calls
	clock  *clocktesting.FakeClock

	lists, creates, statusUpdates atomic.Int32
	leaseGets, leaseDeletes       atomic.Int32

	onCreate       func() error
	onList         func() error
	onStatusUpdate func() error
	onLeaseGet     func() error
	// beforeLeaseDelete runs before the Delete is sent, with its options.
	beforeLeaseDelete func(opts metav1.DeleteOptions)
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	e := &env{clock: clocktesting.NewFakeClock(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))}
	e.c = fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.RemediationRequest{}).
		WithInterceptorFuncs(interceptor.Funcs{
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
				if e.onCreate != nil {
					if err := e.onCreate(); err != nil {
						return err
					}
				}
				return c.Create(ctx, obj, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				e.statusUpdates.Add(1)
				if e.onStatusUpdate != nil {
					if err := e.onStatusUpdate(); err != nil {
						return err
					}
				}
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
	cs := leasetest.NewClientset()
	e.leases = cs.CoordinationV1().Leases(testNS)
	if opts.Namespace == "" {
		opts.Namespace = testNS
	}
	if opts.Identity == "" {
		opts.Identity = me
	}
	if opts.Clock == nil {
		opts.Clock = e.clock
	}
	d, err := New(e.c, hookedLeases{LeasesGetter: cs.CoordinationV1(), e: e}, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	return e
}

// hookedLeases counts Lease Gets and Deletes and runs env's hooks on them.
type hookedLeases struct {
	coordinationv1client.LeasesGetter
	e *env
}

func (h hookedLeases) Leases(ns string) coordinationv1client.LeaseInterface {
	return hookedLease{LeaseInterface: h.LeasesGetter.Leases(ns), e: h.e}
}

type hookedLease struct {
	coordinationv1client.LeaseInterface
	e *env
}

func (l hookedLease) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	l.e.leaseGets.Add(1)
	if l.e.onLeaseGet != nil {
		if err := l.e.onLeaseGet(); err != nil {
			return nil, err
		}
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l hookedLease) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	l.e.leaseDeletes.Add(1)
	if l.e.beforeLeaseDelete != nil {
		l.e.beforeLeaseDelete(opts)
	}
	return l.LeaseInterface.Delete(ctx, name, opts)
}

func incident(t *testing.T, name string) dedup.Incident {
	t.Helper()
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: name}
	return dedup.Incident{
		Fingerprint:  dedup.Fingerprint(target),
		Target:       target,
		SignalTarget: target,
		Signal: signal.Signal{
			Source:   v1alpha1.SourceAlertmanager,
			Name:     "HighLatency",
			Severity: "critical",
			Target:   target,
		},
		ReceivedAt: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC),
	}
}

func (e *env) requests(t *testing.T, fp string) []v1alpha1.RemediationRequest {
	t.Helper()
	var list v1alpha1.RemediationRequestList
	if err := e.c.List(context.Background(), &list, client.InNamespace(testNS),
		client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func (e *env) lease(t *testing.T, fp string) *coordinationv1.Lease {
	t.Helper()
	l, err := e.leases.Get(context.Background(), lease.LeaseName(LeasePrefix, fp), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// putLease stores a Lease for fp held by holder, last renewed at renew.
func (e *env) putLease(t *testing.T, fp, holder string, renew time.Time) *coordinationv1.Lease {
	t.Helper()
	at := metav1.NewMicroTime(renew)
	seconds := int32(30)
	transitions := int32(4)
	l, err := e.leases.Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: lease.LeaseName(LeasePrefix, fp)},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &holder,
			LeaseDurationSeconds: &seconds,
			AcquireTime:          &at,
			RenewTime:            &at,
			LeaseTransitions:     &transitions,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type outcome struct {
	res dedup.Result
	err error
}

// record runs one Record and steps the fake clock past every wait it
// starts, until it returns.
func (e *env) record(t *testing.T, in dedup.Incident) (dedup.Result, error) {
	t.Helper()
	done := make(chan outcome, 1)
	go func() {
		res, err := e.d.Record(context.Background(), in)
		done <- outcome{res, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case o := <-done:
			return o.res, o.err
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Record did not return")
		}
		if e.clock.HasWaiters() {
			// Every wait of the default policies is at most 1s.
			e.clock.Step(time.Second)
			continue
		}
		time.Sleep(time.Millisecond) // yield to the Record goroutine
	}
}

func TestRecordCreatesWhenNone(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	res, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != dedup.Created || res.OccurrenceCount != 1 {
		t.Fatalf("result = %+v, want created with count 1", res)
	}
	// Lock: Get + Create; check: List; write: Create; release: Get + Delete.
	if g, l, c, d := e.leaseGets.Load(), e.lists.Load(), e.creates.Load(), e.leaseDeletes.Load(); g != 2 || l != 1 || c != 1 || d != 1 {
		t.Fatalf("lease gets %d, lists %d, creates %d, lease deletes %d; want 2, 1, 1, 1", g, l, c, d)
	}
	rrs := e.requests(t, in.Fingerprint)
	if len(rrs) != 1 {
		t.Fatalf("%d requests, want 1", len(rrs))
	}
	rr := rrs[0]
	if rr.Name != res.Name || !strings.HasPrefix(rr.Name, "rr-"+in.Fingerprint[:12]+"-") || len(rr.Name) <= len("rr-")+13 {
		t.Fatalf("request name %q (answered %q): want rr-<12 hex>-<random suffix>", rr.Name, res.Name)
	}
	if rr.Spec.Fingerprint != in.Fingerprint || rr.Labels[v1alpha1.LabelTarget] != v1alpha1.TargetLabelValue(in.Target) ||
		rr.Spec.SignalName != "HighLatency" || rr.Spec.Target != in.Target {
		t.Fatalf("request = %+v, want the incident's fingerprint, target label, signal and target", rr)
	}
	if l := e.lease(t, in.Fingerprint); l != nil {
		t.Fatalf("lease still exists after Record: %+v", l.Spec)
	}
}

func TestSecondRecordIsDuplicateAndCounts(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	first, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	for want := int64(2); want <= 3; want++ {
		res, err := e.record(t, in)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != dedup.Duplicate || res.Name != first.Name || res.OccurrenceCount != want {
			t.Fatalf("result = %+v, want duplicate of %s with count %d", res, first.Name, want)
		}
	}
	rrs := e.requests(t, in.Fingerprint)
	if len(rrs) != 1 || rrs[0].EffectiveDeduplication().OccurrenceCount != 3 {
		t.Fatalf("requests = %d, count %d; want 1 with count 3", len(rrs), rrs[0].EffectiveDeduplication().OccurrenceCount)
	}
}

// Two requests of one replica both "hold" the lock, because the holder is
// the pod: the Lease exists, its holder is this pod, so the second request
// goes in while the first is still inside. Both see no request and both
// create one. The interleaving is made certain: the second request starts
// only once the first holds the Lease and waits at its Create, and it is
// let through only once the second has passed its check and its lock too.
func TestReentrantHolderCreatesDuplicates(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	// Bounded, so that a Dedup without the flaw (the second request would
	// wait for a fake clock nobody steps) fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reached := make(chan struct{}, 2)
	release := make(chan struct{})
	e.onCreate = func() error {
		reached <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	awaitCreate := func(which string) {
		t.Helper()
		select {
		case <-reached:
		case <-ctx.Done():
			close(release)
			t.Fatalf("the %s request never reached Create", which)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	results := make([]outcome, 2)
	record := func(i int) {
		wg.Go(func() {
			res, err := e.d.Record(ctx, in)
			results[i] = outcome{res, err}
		})
	}
	record(0)
	awaitCreate("first")
	if l := e.lease(t, in.Fingerprint); l == nil || *l.Spec.HolderIdentity != me {
		close(release)
		t.Fatalf("lease while the first request creates = %+v, want held by %s", l, me)
	}
	record(1)
	awaitCreate("second")
	close(release)
	wg.Wait()
	for i, o := range results {
		if o.err != nil || o.res.Outcome != dedup.Created {
			t.Fatalf("request %d: %+v, %v; want created", i, o.res, o.err)
		}
	}
	if results[0].res.Name == results[1].res.Name {
		t.Fatalf("both requests answered %s; want two distinct requests", results[0].res.Name)
	}
	if rrs := e.requests(t, in.Fingerprint); len(rrs) != 2 {
		t.Fatalf("%d requests for one incident, want the 2 the flaw makes", len(rrs))
	}
	// One Lease was created, and the first release deleted it under the
	// second request.
	if l := e.lease(t, in.Fingerprint); l != nil {
		t.Fatalf("lease still exists: %+v", l.Spec)
	}
}

// Release reads the Lease, sees this pod as holder, and deletes it without
// preconditions: another replica's takeover between the read and the
// delete is deleted with it.
func TestReleaseDeletesLeaseRetakenByAnother(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	var sent metav1.DeleteOptions
	e.beforeLeaseDelete = func(opts metav1.DeleteOptions) {
		sent = opts
		l, err := e.leases.Get(context.Background(), lease.LeaseName(LeasePrefix, in.Fingerprint), metav1.GetOptions{})
		if err != nil {
			t.Errorf("read lease: %v", err)
			return
		}
		holder := other
		l.Spec.HolderIdentity = &holder
		if _, err := e.leases.Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
			t.Errorf("take over: %v", err)
		}
	}
	res, err := e.record(t, in)
	if err != nil || res.Outcome != dedup.Created {
		t.Fatalf("Record = %+v, %v; want created", res, err)
	}
	if sent.Preconditions != nil {
		t.Fatalf("release sent preconditions %+v; the original sent none", sent.Preconditions)
	}
	if l := e.lease(t, in.Fingerprint); l != nil {
		t.Fatalf("the lease %s took over survived: %+v", other, l.Spec)
	}
	if e.leaseDeletes.Load() != 1 {
		t.Fatalf("%d lease deletes, want 1", e.leaseDeletes.Load())
	}
}

func TestHeldByAnotherExhaustsAfterTenAttempts(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	e.putLease(t, in.Fingerprint, other, e.clock.Now())
	_, err := e.record(t, in)
	if !errors.Is(err, dedup.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if !strings.Contains(err.Error(), in.Fingerprint) || !strings.Contains(err.Error(), "10 attempts") {
		t.Fatalf("error %q does not name the fingerprint and the attempts", err)
	}
	// Ten lock attempts (one Get each), a re-check after each of the nine
	// waits, nothing written.
	if g, l, c := e.leaseGets.Load(), e.lists.Load(), e.creates.Load(); g != 10 || l != 9 || c != 0 {
		t.Fatalf("lease gets %d, lists %d, creates %d; want 10, 9, 0", g, l, c)
	}
	if l := e.lease(t, in.Fingerprint); l == nil || *l.Spec.HolderIdentity != other {
		t.Fatalf("lease = %+v, want still held by %s", l, other)
	}
}

func TestRecheckAfterWaitAnswersDuplicate(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	e.putLease(t, in.Fingerprint, other, e.clock.Now())
	// The holder creates the request while this one waits.
	var once sync.Once
	e.onLeaseGet = func() error {
		once.Do(func() {
			rr := NewRequest(testNS, in)
			rr.Name = "rr-by-other"
			if err := e.c.Create(context.Background(), rr); err != nil {
				t.Errorf("create: %v", err)
			}
		})
		return nil
	}
	res, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != dedup.Duplicate || res.Name != "rr-by-other" || res.OccurrenceCount != 2 {
		t.Fatalf("result = %+v, want duplicate of rr-by-other with count 2", res)
	}
	if g := e.leaseGets.Load(); g != 1 {
		t.Fatalf("%d lease gets, want 1: the re-check answers before a second lock attempt", g)
	}
}

func TestExpiredLeaseIsTakenOverByLocalClock(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	before := e.putLease(t, in.Fingerprint, other, e.clock.Now().Add(-31*time.Second))
	var during *coordinationv1.Lease
	e.onCreate = func() error {
		l, err := e.leases.Get(context.Background(), lease.LeaseName(LeasePrefix, in.Fingerprint), metav1.GetOptions{})
		during = l
		return err
	}
	res, err := e.record(t, in)
	if err != nil || res.Outcome != dedup.Created {
		t.Fatalf("Record = %+v, %v; want created", res, err)
	}
	if during == nil || *during.Spec.HolderIdentity != me {
		t.Fatalf("lease while creating = %+v, want held by %s", during, me)
	}
	// The takeover keeps acquireTime and leaseTransitions, as the original did.
	if !during.Spec.AcquireTime.Equal(before.Spec.AcquireTime) || *during.Spec.LeaseTransitions != *before.Spec.LeaseTransitions {
		t.Fatalf("takeover changed acquireTime or leaseTransitions: %+v, was %+v", during.Spec, before.Spec)
	}
	if !during.Spec.RenewTime.Time.Equal(e.clock.Now()) {
		t.Fatalf("renewTime = %v, want the local clock %v", during.Spec.RenewTime, e.clock.Now())
	}
}

func TestLeaseWithoutRenewTimeNeverExpires(t *testing.T) {
	e := newEnv(t, Options{MaxAttempts: 2})
	in := incident(t, "checkout")
	l := e.putLease(t, in.Fingerprint, other, e.clock.Now())
	l.Spec.RenewTime = nil
	if _, err := e.leases.Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(time.Hour)
	if _, err := e.record(t, in); !errors.Is(err, dedup.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy: a Lease without renewTime never expires", err)
	}
}

// Under conflict the count update gives up after CountAttempts tries and
// the signal is answered Duplicate all the same: it is lost from the count.
func TestCountGivesUpUnderConflict(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	first, err := e.record(t, in)
	if err != nil {
		t.Fatal(err)
	}
	e.onStatusUpdate = func() error {
		return apierrors.NewConflict(rrResource, first.Name, errors.New("changed"))
	}
	res, err := e.record(t, in)
	if err != nil {
		t.Fatalf("err = %v, want none: the original answers duplicate", err)
	}
	if res.Outcome != dedup.Duplicate || res.OccurrenceCount != 1 {
		t.Fatalf("result = %+v, want duplicate with the count read before, 1", res)
	}
	if n := e.statusUpdates.Load(); n != 3 {
		t.Fatalf("%d status updates, want 3 tries", n)
	}
	if got := e.requests(t, in.Fingerprint)[0].EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Fatalf("stored count %d, want 1: the second signal is lost", got)
	}
}

func TestAPIErrorsAreUnavailableAtOnce(t *testing.T) {
	boom := apierrors.NewInternalError(errors.New("etcd down"))
	tests := []struct {
		name  string
		setup func(e *env)
	}{
		{"lease get", func(e *env) { e.onLeaseGet = func() error { return boom } }},
		{"list", func(e *env) { e.onList = func() error { return boom } }},
		{"create", func(e *env) { e.onCreate = func() error { return boom } }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			tt.setup(e)
			in := incident(t, "checkout")
			_, err := e.record(t, in)
			if !errors.Is(err, dedup.ErrUnavailable) || !strings.Contains(err.Error(), in.Fingerprint) {
				t.Fatalf("err = %v, want ErrUnavailable naming the fingerprint", err)
			}
			if e.clock.HasWaiters() || e.leaseGets.Load() > 2 {
				t.Fatalf("retried after an API error (%d lease gets)", e.leaseGets.Load())
			}
		})
	}
}

func TestRecordHonoursContext(t *testing.T) {
	e := newEnv(t, Options{})
	in := incident(t, "checkout")
	e.putLease(t, in.Fingerprint, other, e.clock.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.d.Record(ctx, in)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !e.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("Record never waited")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Record did not return after cancel")
	}
}

func TestNewValidates(t *testing.T) {
	c := fake.NewClientBuilder().Build()
	leases := leasetest.NewClientset().CoordinationV1()
	tests := []struct {
		name string
		opts Options
	}{
		{"no namespace", Options{Identity: me}},
		{"no identity", Options{Namespace: testNS}},
		{"fractional lease", Options{Namespace: testNS, Identity: me, LeaseDuration: 1500 * time.Millisecond}},
		{"negative attempts", Options{Namespace: testNS, Identity: me, MaxAttempts: -1}},
		{"negative count attempts", Options{Namespace: testNS, Identity: me, CountAttempts: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(c, leases, tt.opts); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(nil, leases, Options{Namespace: testNS, Identity: me}); err == nil {
		t.Fatal("New accepted a nil client")
	}
	if _, err := New(c, nil, Options{Namespace: testNS, Identity: me}); err == nil {
		t.Fatal("New accepted a nil Leases client")
	}
	if _, err := New(c, leases, Options{Namespace: testNS, Identity: me}); err != nil {
		t.Fatalf("New rejected valid options: %v", err)
	}
}
