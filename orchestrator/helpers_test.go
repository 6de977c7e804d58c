package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lease/leasetest"
)

const testNS = "leasehold-system"

// t0 is the fake clock's start.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

var worker1 = v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"}

// env is one replica's reconcilers over a fake API server.
type env struct {
	t       *testing.T
	c       client.WithWatch // what the reconcilers use: counted and intercepted
	raw     client.WithWatch // the same store, for the test playing other actors
	locker  *leasetest.Fake
	clock   *clocktesting.FakeClock
	events  *events.FakeRecorder
	reg     *prometheus.Registry
	opts    Options
	rr      *requestReconciler
	timeout *timeoutReconciler
	writes  atomic.Int64 // create, update, patch and delete calls through c
	stale   bool         // the reconcilers' cache misses every execution
}

// envOption adjusts an env before its reconcilers are built.
type envOption func(*env, *fake.ClientBuilder, *interceptor.Funcs)

// withOptions changes the orchestrator Options.
func withOptions(f func(*Options)) envOption {
	return func(e *env, _ *fake.ClientBuilder, _ *interceptor.Funcs) { f(&e.opts) }
}

// withInterceptor changes the fake client's interceptor functions.
func withInterceptor(f func(*env, *interceptor.Funcs)) envOption {
	return func(e *env, _ *fake.ClientBuilder, fs *interceptor.Funcs) { f(e, fs) }
}

func newScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t *testing.T, objs []client.Object, options ...envOption) *env {
	t.Helper()
	e := &env{
		t:      t,
		locker: leasetest.New(t, lease.Options{Namespace: testNS, Prefix: "ro-lock"}),
		clock:  clocktesting.NewFakeClock(t0),
		events: events.NewFakeRecorder(100),
		reg:    prometheus.NewRegistry(),
	}
	e.opts = Options{
		Namespace:  testNS,
		Identity:   "replica-1",
		Locker:     e.locker,
		Clock:      e.clock,
		Rand:       func() float64 { return 0.5 },
		Registerer: e.reg,
	}
	b := fake.NewClientBuilder().WithScheme(newScheme(t)).
		WithStatusSubresource(&v1alpha1.RemediationRequest{}, &v1alpha1.WorkflowExecution{}).
		WithObjects(objs...)
	var fs interceptor.Funcs
	for _, o := range options {
		o(e, b, &fs)
	}
	// Count writes around whatever the test intercepts.
	fs = countWrites(e, fs)
	e.raw = b.Build()
	e.c = interceptor.NewClient(e.raw, fs)
	e.opts = e.opts.withDefaults()
	if err := e.opts.validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	var cached client.Client = e.c
	if e.stale {
		cached = hideExecutions{e.c}
	}
	e.rr = &requestReconciler{client: cached, api: e.c, events: e.events, opts: e.opts, metrics: m}
	e.timeout = &timeoutReconciler{client: e.c, api: e.c, events: e.events, opts: e.opts, metrics: m}
	return e
}

// countWrites wraps the write functions of fs (or the client's own) so that
// e.writes counts every write.
func countWrites(e *env, fs interceptor.Funcs) interceptor.Funcs {
	create, patch, update, del := fs.Create, fs.Patch, fs.Update, fs.Delete
	subPatch, subUpdate := fs.SubResourcePatch, fs.SubResourceUpdate
	fs.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		e.writes.Add(1)
		if create != nil {
			return create(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	fs.Patch = func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
		e.writes.Add(1)
		if patch != nil {
			return patch(ctx, c, obj, p, opts...)
		}
		return c.Patch(ctx, obj, p, opts...)
	}
	fs.Update = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		e.writes.Add(1)
		if update != nil {
			return update(ctx, c, obj, opts...)
		}
		return c.Update(ctx, obj, opts...)
	}
	fs.Delete = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
		e.writes.Add(1)
		if del != nil {
			return del(ctx, c, obj, opts...)
		}
		return c.Delete(ctx, obj, opts...)
	}
	fs.SubResourcePatch = func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
		e.writes.Add(1)
		if subPatch != nil {
			return subPatch(ctx, c, sub, obj, p, opts...)
		}
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}
	fs.SubResourceUpdate = func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		e.writes.Add(1)
		if subUpdate != nil {
			return subUpdate(ctx, c, sub, obj, opts...)
		}
		return c.SubResource(sub).Update(ctx, obj, opts...)
	}
	return fs
}

// request builds a request on target t received at t0 + offset, labelled
// as the gateway labels it. Options: with finalizer, phase.
func request(name string, t v1alpha1.TargetRef, offset time.Duration) *v1alpha1.RemediationRequest {
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			Namespace:         testNS,
			UID:               types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(t0.Add(offset)),
			Labels: map[string]string{
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(t),
				v1alpha1.LabelFingerprint: strings.Repeat("a", 40),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  strings.Repeat("a", 64),
			SignalName:   "NodeNotReady",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       t,
			SignalTarget: t,
			ReceivedAt:   metav1.NewMicroTime(t0.Add(offset)),
		},
	}
}

func withFinalizer(rr *v1alpha1.RemediationRequest) *v1alpha1.RemediationRequest {
	rr.Finalizers = append(rr.Finalizers, v1alpha1.FinalizerCancelExecution)
	return rr
}

func executing(rr *v1alpha1.RemediationRequest, w *v1alpha1.WorkflowExecution) *v1alpha1.RemediationRequest {
	rr.Status.Phase = v1alpha1.PhaseExecuting
	rr.Status.WorkflowExecutionRef = &v1alpha1.ObjectReference{Name: w.Name, UID: string(w.UID)}
	return withFinalizer(rr)
}

// execution builds execution number seq of rr's target for rr, in phase.
func execution(rr *v1alpha1.RemediationRequest, seq int64, phase v1alpha1.WorkflowPhase) *v1alpha1.WorkflowExecution {
	w := newExecution(rr, seq, lease.Token{}, Options{DefaultTimeout: 10 * time.Minute})
	w.UID = types.UID(fmt.Sprintf("uid-%s", w.Name))
	w.CreationTimestamp = metav1.NewTime(t0)
	w.Status.Phase = phase
	return w
}

func (e *env) reconcile(name string) reconcile.Result {
	e.t.Helper()
	res, err := e.rr.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: name}})
	if err != nil {
		e.t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

func (e *env) getRR(name string) *v1alpha1.RemediationRequest {
	e.t.Helper()
	var rr v1alpha1.RemediationRequest
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &rr); err != nil {
		e.t.Fatalf("get request %s: %v", name, err)
	}
	return &rr
}

func (e *env) getWFE(name string) *v1alpha1.WorkflowExecution {
	e.t.Helper()
	var w v1alpha1.WorkflowExecution
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &w); err != nil {
		e.t.Fatalf("get execution %s: %v", name, err)
	}
	return &w
}

func (e *env) executions() []v1alpha1.WorkflowExecution {
	e.t.Helper()
	var l v1alpha1.WorkflowExecutionList
	if err := e.c.List(context.Background(), &l, client.InNamespace(testNS)); err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// drainEvents returns the events recorded so far.
func (e *env) drainEvents() []string {
	var out []string
	for {
		select {
		case ev := <-e.events.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// hasEvent reports whether one of evs starts with "<type> <reason> ".
func hasEvent(evs []string, typ, reason string) bool {
	for _, ev := range evs {
		if strings.HasPrefix(ev, typ+" "+reason+" ") {
			return true
		}
	}
	return false
}

// outcomes reads orchestrator_reconcile_total for the controller and outcome.
func (e *env) outcomes(controller string, out outcome) float64 {
	return testutil.ToFloat64(e.rr.metrics.reconciles.WithLabelValues(controller, string(out)))
}

func (e *env) assertBlockedBy(name, wfe string) {
	e.t.Helper()
	rr := e.getRR(name)
	if rr.Status.Phase != v1alpha1.PhaseBlocked || rr.Status.BlockReason != v1alpha1.BlockReasonResourceBusy || rr.Status.BlockedBy != wfe {
		e.t.Fatalf("request %s: phase %q reason %q blockedBy %q, want Blocked/ResourceBusy by %s",
			name, rr.Status.Phase, rr.Status.BlockReason, rr.Status.BlockedBy, wfe)
	}
	c := findTestCondition(rr, ConditionBlocked)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonResourceBusy || !strings.Contains(c.Message, wfe) {
		e.t.Fatalf("request %s: Blocked condition %+v, want True/ResourceBusy naming %s", name, c, wfe)
	}
}

func (e *env) assertExecuting(name, wfe string) {
	e.t.Helper()
	rr := e.getRR(name)
	if rr.Status.Phase != v1alpha1.PhaseExecuting || rr.Status.WorkflowExecutionRef == nil || rr.Status.WorkflowExecutionRef.Name != wfe ||
		rr.Status.BlockedBy != "" || rr.Status.BlockReason != "" {
		e.t.Fatalf("request %s: status %+v, want Executing with %s", name, rr.Status, wfe)
	}
	if c := findTestCondition(rr, ConditionExecuting); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonStarted {
		e.t.Fatalf("request %s: Executing condition %+v", name, c)
	}
}

func findTestCondition(rr *v1alpha1.RemediationRequest, typ string) *metav1.Condition {
	for i := range rr.Status.Conditions {
		if rr.Status.Conditions[i].Type == typ {
			return &rr.Status.Conditions[i]
		}
	}
	return nil
}

// hideExecutions is a cache that has not seen any execution yet: its lists
// of executions are empty. It makes a reconcile take the lock and read the
// API server.
type hideExecutions struct{ client.Client }

func (h hideExecutions) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if l, ok := list.(*v1alpha1.WorkflowExecutionList); ok {
		l.Items = nil
		return nil
	}
	return h.Client.List(ctx, list, opts...)
}

// staleCache makes the reconcilers' cache reads miss every execution.
func staleCache() envOption {
	return func(e *env, _ *fake.ClientBuilder, _ *interceptor.Funcs) { e.stale = true }
}
