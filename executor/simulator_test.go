package executor_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/executor"
)

const ns = "leasehold-system"

// epoch is a whole second: status times are stored with one-second
// precision, so the fake clock's readings survive a round trip unchanged.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

func newWFE(name string, phase v1alpha1.WorkflowPhase) *v1alpha1.WorkflowExecution {
	return &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name)},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"},
			RemediationRequestRef: v1alpha1.ObjectReference{Name: "rr-" + name, UID: "rr-uid-" + name},
			Sequence:              1,
		},
		Status: v1alpha1.WorkflowExecutionStatus{Phase: phase},
	}
}

// fixture is one Simulator over a fake API server with a status subresource.
type fixture struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	cli   client.WithWatch
	reg   *prometheus.Registry
	sim   *executor.Simulator
	// statusWrites counts the simulator's status updates that succeeded.
	statusWrites int
}

type fixtureOptions struct {
	opts    executor.Options
	objs    []client.Object
	onWrite func(ctx context.Context, c client.Client, obj client.Object) error // before each status update
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: clocktesting.NewFakeClock(epoch), reg: prometheus.NewRegistry()}
	f.cli = fake.NewClientBuilder().
		WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.WorkflowExecution{}).
		WithObjects(fo.objs...).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				if fo.onWrite != nil {
					if err := fo.onWrite(ctx, c, obj); err != nil {
						return err
					}
				}
				err := c.SubResource(sub).Update(ctx, obj, opts...)
				if err == nil {
					f.statusWrites++
				}
				return err
			},
		}).
		Build()
	opts := fo.opts
	opts.Namespace = ns
	opts.Clock = f.clock
	opts.Registerer = f.reg
	var err error
	if f.sim, err = executor.New(f.cli, opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) reconcile(name string) reconcile.Result {
	f.t.Helper()
	res, err := f.sim.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	if err != nil {
		f.t.Fatalf("Reconcile(%s): %v", name, err)
	}
	return res
}

func (f *fixture) get(name string) *v1alpha1.WorkflowExecution {
	f.t.Helper()
	var wfe v1alpha1.WorkflowExecution
	if err := f.cli.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &wfe); err != nil {
		f.t.Fatalf("get %s: %v", name, err)
	}
	return &wfe
}

// transitions is the value of executor_simulator_transitions_total{phase}.
func (f *fixture) transitions(phase v1alpha1.WorkflowPhase) float64 {
	f.t.Helper()
	return metricValue(f.t, f.reg, "executor_simulator_transitions_total", map[string]string{"phase": string(phase)})
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestPendingRunsThenCompletesAfterDuration(t *testing.T) {
	// An empty phase is Pending: the status subresource drops status on create.
	for _, phase := range []v1alpha1.WorkflowPhase{"", v1alpha1.WorkflowPending} {
		t.Run("phase="+string(phase), func(t *testing.T) {
			const d = 3 * time.Second
			f := newFixture(t, fixtureOptions{
				opts: executor.Options{Duration: d},
				objs: []client.Object{newWFE("wfe-1", phase)},
			})

			if res := f.reconcile("wfe-1"); res.RequeueAfter != d {
				t.Fatalf("after start: RequeueAfter = %v, want the whole duration %v", res.RequeueAfter, d)
			}
			w := f.get("wfe-1")
			if w.Status.Phase != v1alpha1.WorkflowRunning || w.Status.Reason != executor.ReasonSimulatedStart {
				t.Fatalf("after start: phase %q reason %q, want Running %s", w.Status.Phase, w.Status.Reason, executor.ReasonSimulatedStart)
			}
			if w.Status.StartedAt == nil || !w.Status.StartedAt.Time.Equal(epoch) {
				t.Fatalf("startedAt = %v, want %v", w.Status.StartedAt, epoch)
			}
			if w.Status.CompletedAt != nil {
				t.Fatalf("completedAt = %v on a running execution", w.Status.CompletedAt)
			}

			// One nanosecond early: still running, requeued for exactly the rest.
			f.clock.Step(d - time.Nanosecond)
			if res := f.reconcile("wfe-1"); res.RequeueAfter != time.Nanosecond {
				t.Fatalf("1ns before the end: RequeueAfter = %v, want 1ns", res.RequeueAfter)
			}
			if p := f.get("wfe-1").Status.Phase; p != v1alpha1.WorkflowRunning {
				t.Fatalf("1ns before the end: phase %q, want Running", p)
			}
			if f.statusWrites != 1 {
				t.Fatalf("%d status writes before the end, want 1 (the start)", f.statusWrites)
			}

			f.clock.Step(time.Nanosecond)
			if res := f.reconcile("wfe-1"); res.RequeueAfter != 0 {
				t.Fatalf("at the end: RequeueAfter = %v, want 0", res.RequeueAfter)
			}
			w = f.get("wfe-1")
			if w.Status.Phase != v1alpha1.WorkflowCompleted || w.Status.Reason != executor.ReasonSimulatedSuccess {
				t.Fatalf("at the end: phase %q reason %q, want Completed %s", w.Status.Phase, w.Status.Reason, executor.ReasonSimulatedSuccess)
			}
			if w.Status.CompletedAt == nil || !w.Status.CompletedAt.Time.Equal(epoch.Add(d)) {
				t.Fatalf("completedAt = %v, want %v", w.Status.CompletedAt, epoch.Add(d))
			}
			if w.Status.StartedAt == nil || !w.Status.StartedAt.Time.Equal(epoch) {
				t.Fatalf("startedAt changed to %v", w.Status.StartedAt)
			}

			// Completed is terminal: later reconciles write nothing.
			f.clock.Step(time.Hour)
			if res := f.reconcile("wfe-1"); res.RequeueAfter != 0 {
				t.Fatalf("after the end: RequeueAfter = %v, want 0", res.RequeueAfter)
			}
			if f.statusWrites != 2 {
				t.Fatalf("%d status writes, want 2", f.statusWrites)
			}
			if r, c := f.transitions(v1alpha1.WorkflowRunning), f.transitions(v1alpha1.WorkflowCompleted); r != 1 || c != 1 {
				t.Fatalf("transitions: Running %v Completed %v, want 1 and 1", r, c)
			}
		})
	}
}

func TestDefaultDurationIsTwoSeconds(t *testing.T) {
	f := newFixture(t, fixtureOptions{objs: []client.Object{newWFE("wfe-1", "")}})
	if res := f.reconcile("wfe-1"); res.RequeueAfter != 2*time.Second {
		t.Fatalf("RequeueAfter = %v, want 2s", res.RequeueAfter)
	}
}

func TestFailureRate(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		roll float64
		want v1alpha1.WorkflowPhase
	}{
		{"rate 1 fails even the highest roll", 1, math.Nextafter(1, 0), v1alpha1.WorkflowFailed},
		{"rate 0 never fails", 0, 0, v1alpha1.WorkflowCompleted},
		{"roll below the rate fails", 0.3, 0.29, v1alpha1.WorkflowFailed},
		{"roll at the rate completes", 0.3, 0.3, v1alpha1.WorkflowCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rolls := 0
			f := newFixture(t, fixtureOptions{
				opts: executor.Options{Duration: time.Second, FailureRate: tt.rate, Rand: func() float64 { rolls++; return tt.roll }},
				objs: []client.Object{newWFE("wfe-1", v1alpha1.WorkflowPending)},
			})
			f.reconcile("wfe-1")
			f.clock.Step(time.Second)
			f.reconcile("wfe-1")
			w := f.get("wfe-1")
			if w.Status.Phase != tt.want {
				t.Fatalf("phase %q, want %q", w.Status.Phase, tt.want)
			}
			if tt.want == v1alpha1.WorkflowFailed {
				if w.Status.Reason != executor.ReasonSimulatedFailure {
					t.Errorf("reason %q, want %s", w.Status.Reason, executor.ReasonSimulatedFailure)
				}
				if w.Status.CompletedAt == nil {
					t.Error("a failed execution has no completedAt")
				}
			}
			if got := f.transitions(tt.want); got != 1 {
				t.Errorf("transitions{phase=%s} = %v, want 1", tt.want, got)
			}
			if tt.rate > 0 && rolls != 1 {
				t.Errorf("rand called %d times, want once per finished execution", rolls)
			}
		})
	}
}

func TestTerminalExecutionsAreNeverWritten(t *testing.T) {
	for _, phase := range []v1alpha1.WorkflowPhase{v1alpha1.WorkflowCompleted, v1alpha1.WorkflowFailed, v1alpha1.WorkflowCancelled} {
		t.Run(string(phase), func(t *testing.T) {
			wfe := newWFE("wfe-1", phase)
			wfe.Status.Reason = "SetByOrchestrator"
			f := newFixture(t, fixtureOptions{objs: []client.Object{wfe}})
			before := f.get("wfe-1")
			for range 3 {
				if res := f.reconcile("wfe-1"); res.RequeueAfter != 0 {
					t.Fatalf("RequeueAfter = %v for a terminal execution, want 0", res.RequeueAfter)
				}
				f.clock.Step(time.Hour)
			}
			after := f.get("wfe-1")
			if f.statusWrites != 0 || after.ResourceVersion != before.ResourceVersion || after.Status.Reason != "SetByOrchestrator" {
				t.Fatalf("terminal execution written: %d writes, resourceVersion %s -> %s, reason %q",
					f.statusWrites, before.ResourceVersion, after.ResourceVersion, after.Status.Reason)
			}
		})
	}
}

// TestConflictRereadsAndLeavesTheNewerStatus has the orchestrator end the
// execution between the simulator's read and its write: the write must fail
// on the resourceVersion and the newer, terminal status must stay.
func TestConflictRereadsAndLeavesTheNewerStatus(t *testing.T) {
	tests := []struct {
		name       string
		initial    v1alpha1.WorkflowPhase
		advance    time.Duration // before the reconcile that loses the race
		concurrent v1alpha1.WorkflowPhase
		reason     string
	}{
		{"start loses to a cancel", v1alpha1.WorkflowPending, 0, v1alpha1.WorkflowCancelled, "RequestDeleted"},
		{"completion loses to a timeout", v1alpha1.WorkflowRunning, time.Minute, v1alpha1.WorkflowFailed, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wfe := newWFE("wfe-1", tt.initial)
			if tt.initial == v1alpha1.WorkflowRunning {
				wfe.Status.StartedAt = &metav1.Time{Time: epoch}
			}
			raced := false
			f := newFixture(t, fixtureOptions{
				objs: []client.Object{wfe},
				onWrite: func(ctx context.Context, c client.Client, obj client.Object) error {
					if raced {
						return nil
					}
					raced = true
					// The orchestrator's write lands first.
					var cur v1alpha1.WorkflowExecution
					if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
						return err
					}
					cur.Status.Phase, cur.Status.Reason = tt.concurrent, tt.reason
					return c.Status().Update(ctx, &cur)
				},
			})
			f.clock.Step(tt.advance)

			res := f.reconcile("wfe-1")
			if !raced {
				t.Fatal("the simulator wrote nothing")
			}
			if res.RequeueAfter <= 0 || res.RequeueAfter >= time.Second {
				t.Fatalf("after a conflict: RequeueAfter = %v, want a short positive requeue", res.RequeueAfter)
			}
			// The requeued reconcile reads the newer status and leaves it.
			if res := f.reconcile("wfe-1"); res.RequeueAfter != 0 {
				t.Fatalf("after re-reading: RequeueAfter = %v, want 0", res.RequeueAfter)
			}
			w := f.get("wfe-1")
			if w.Status.Phase != tt.concurrent || w.Status.Reason != tt.reason {
				t.Fatalf("phase %q reason %q, want the orchestrator's %q %q", w.Status.Phase, w.Status.Reason, tt.concurrent, tt.reason)
			}
			if f.statusWrites != 0 {
				t.Fatalf("%d of the simulator's status writes succeeded, want 0", f.statusWrites)
			}
			if got := metricValue(t, f.reg, "executor_simulator_conflicts_total", nil); got != 1 {
				t.Fatalf("conflicts_total = %v, want 1", got)
			}
		})
	}
}

// TestStartedByAnotherProcess covers a simulator that restarted, or a second
// replica: it has no record of the start and must go by status.startedAt.
func TestStartedByAnotherProcess(t *testing.T) {
	wfe := newWFE("wfe-1", v1alpha1.WorkflowRunning)
	wfe.Status.StartedAt = &metav1.Time{Time: epoch.Add(-time.Second)}
	f := newFixture(t, fixtureOptions{opts: executor.Options{Duration: 3 * time.Second}, objs: []client.Object{wfe}})
	if res := f.reconcile("wfe-1"); res.RequeueAfter != 2*time.Second {
		t.Fatalf("RequeueAfter = %v, want the 2s left of the run", res.RequeueAfter)
	}
	f.clock.Step(2 * time.Second)
	f.reconcile("wfe-1")
	if p := f.get("wfe-1").Status.Phase; p != v1alpha1.WorkflowCompleted {
		t.Fatalf("phase %q, want Completed", p)
	}
}

// TestRunningWithoutStartTime: someone else set Running without startedAt;
// the run counts from when this simulator first saw it.
func TestRunningWithoutStartTime(t *testing.T) {
	f := newFixture(t, fixtureOptions{opts: executor.Options{Duration: 2 * time.Second}, objs: []client.Object{newWFE("wfe-1", v1alpha1.WorkflowRunning)}})
	if res := f.reconcile("wfe-1"); res.RequeueAfter != 2*time.Second {
		t.Fatalf("first sight: RequeueAfter = %v, want 2s", res.RequeueAfter)
	}
	f.clock.Step(time.Second)
	if res := f.reconcile("wfe-1"); res.RequeueAfter != time.Second {
		t.Fatalf("1s later: RequeueAfter = %v, want 1s", res.RequeueAfter)
	}
	f.clock.Step(time.Second)
	f.reconcile("wfe-1")
	if p := f.get("wfe-1").Status.Phase; p != v1alpha1.WorkflowCompleted {
		t.Fatalf("phase %q, want Completed", p)
	}
}

func TestGoneOrDeletingOrElsewhere(t *testing.T) {
	deleting := newWFE("deleting", v1alpha1.WorkflowPending)
	deleting.Finalizers = []string{"test/keep"}
	deleting.DeletionTimestamp = &metav1.Time{Time: epoch}
	elsewhere := newWFE("elsewhere", v1alpha1.WorkflowPending)
	elsewhere.Namespace = "other"
	f := newFixture(t, fixtureOptions{objs: []client.Object{deleting, elsewhere}})

	for _, req := range []types.NamespacedName{
		{Namespace: ns, Name: "absent"},
		{Namespace: ns, Name: "deleting"},
		{Namespace: "other", Name: "elsewhere"},
	} {
		res, err := f.sim.Reconcile(context.Background(), reconcile.Request{NamespacedName: req})
		if err != nil || res.RequeueAfter != 0 {
			t.Errorf("Reconcile(%s) = %+v, %v; want nothing to do", req, res, err)
		}
	}
	if f.statusWrites != 0 {
		t.Fatalf("%d status writes, want 0", f.statusWrites)
	}
}

func TestDeletedBetweenReadAndWrite(t *testing.T) {
	f := newFixture(t, fixtureOptions{
		objs: []client.Object{newWFE("wfe-1", v1alpha1.WorkflowPending)},
		onWrite: func(ctx context.Context, c client.Client, obj client.Object) error {
			return c.Delete(ctx, obj)
		},
	})
	if res := f.reconcile("wfe-1"); res.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter = %v for a deleted execution, want 0", res.RequeueAfter)
	}
}

func TestAPIErrorIsReturned(t *testing.T) {
	boom := apierrors.NewInternalError(errors.New("etcd unavailable"))
	f := newFixture(t, fixtureOptions{
		objs:    []client.Object{newWFE("wfe-1", v1alpha1.WorkflowPending)},
		onWrite: func(context.Context, client.Client, client.Object) error { return boom },
	})
	_, err := f.sim.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "wfe-1"}})
	if !apierrors.IsInternalError(err) {
		t.Fatalf("Reconcile error = %v, want the internal error", err)
	}
	if p := f.get("wfe-1").Status.Phase; p != v1alpha1.WorkflowPending {
		t.Fatalf("phase %q, want Pending unchanged", p)
	}
}

func TestNewValidates(t *testing.T) {
	cli := fake.NewClientBuilder().WithScheme(scheme).Build()
	tests := []struct {
		name string
		opts executor.Options
	}{
		{"no namespace", executor.Options{}},
		{"bad namespace", executor.Options{Namespace: "Not_A_Label"}},
		{"negative duration", executor.Options{Namespace: ns, Duration: -time.Second}},
		{"negative failure rate", executor.Options{Namespace: ns, FailureRate: -0.1}},
		{"failure rate above 1", executor.Options{Namespace: ns, FailureRate: 1.1}},
		{"NaN failure rate", executor.Options{Namespace: ns, FailureRate: math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := executor.New(cli, tt.opts); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := executor.New(nil, executor.Options{Namespace: ns}); err == nil {
		t.Error("New accepted a nil client")
	}
	if _, err := executor.New(cli, executor.Options{Namespace: ns, FailureRate: 1}); err != nil {
		t.Errorf("New rejected failure rate 1: %v", err)
	}
}

// TestMetricsShareARegistry: two Simulators on one registry (as with two
// controllers in one manager) share collectors instead of failing.
func TestMetricsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cli := fake.NewClientBuilder().WithScheme(scheme).Build()
	for i := range 2 {
		if _, err := executor.New(cli, executor.Options{Namespace: ns, Registerer: reg}); err != nil {
			t.Fatalf("Simulator %d: %v", i, err)
		}
	}
}
