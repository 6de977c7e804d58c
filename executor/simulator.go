package executor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// Reasons the Simulator writes into status.reason.
const (
	// ReasonSimulatedStart marks the move to Running.
	ReasonSimulatedStart = "SimulatedStart"
	// ReasonSimulatedSuccess marks the move to Completed.
	ReasonSimulatedSuccess = "SimulatedSuccess"
	// ReasonSimulatedFailure marks the move to Failed.
	ReasonSimulatedFailure = "SimulatedFailure"
)

// DefaultDuration is the default of Options.Duration.
const DefaultDuration = 2 * time.Second

// conflictRequeue is how soon an execution is looked at again after a write
// lost to a newer version. The newer version's watch event normally triggers
// that reconcile first; the requeue covers a reader whose event was lost.
const conflictRequeue = 50 * time.Millisecond

// Options configures a Simulator. Zero values are replaced by the documented
// defaults in one place (withDefaults); New rejects invalid values.
type Options struct {
	// Namespace whose WorkflowExecutions are simulated. Required; events
	// about other namespaces are ignored.
	Namespace string

	// Duration is how long an execution stays Running. Default
	// DefaultDuration (2s); must not be negative.
	Duration time.Duration

	// FailureRate is the probability, in [0, 1], that an execution ends
	// Failed rather than Completed. Default 0: every execution completes.
	FailureRate float64

	// Rand returns a number in [0, 1); an execution fails when it is below
	// FailureRate. Calls are serialised by the Simulator. Default
	// math/rand/v2.Float64.
	Rand func() float64

	// Clock is the source of time. Default clock.RealClock{}.
	Clock clock.Clock

	// Registerer receives the metrics. Nil means metrics are kept but not
	// registered. Collectors already registered by another Simulator with
	// the same MetricsNamespace are shared.
	Registerer prometheus.Registerer

	// MetricsNamespace prefixes metric names:
	// <MetricsNamespace>_simulator_*. Default "executor".
	MetricsNamespace string

	// ControllerName names the controller SetupWithManager registers; it
	// must be unique within a manager. Default "workflowexecution-simulator".
	ControllerName string
}

func (o Options) withDefaults() Options {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MetricsNamespace == "" {
		o.MetricsNamespace = "executor"
	}
	if o.ControllerName == "" {
		o.ControllerName = "workflowexecution-simulator"
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %v", o.Namespace, msgs))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %v: must not be negative", o.Duration))
	}
	// The negated form also rejects NaN.
	if !(o.FailureRate >= 0 && o.FailureRate <= 1) {
		errs = append(errs, fmt.Errorf("failure rate %v: must be in [0, 1]", o.FailureRate))
	}
	if len(errs) > 0 {
		return fmt.Errorf("executor: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Simulator moves WorkflowExecutions from Pending to Running to Completed or
// Failed; see the package documentation. It is a reconcile.Reconciler.
type Simulator struct {
	client  client.Client
	opts    Options
	metrics *metrics

	randMu sync.Mutex

	mu sync.Mutex
	// started holds, per execution this process moved to Running, the exact
	// time it did so; status.startedAt has only one-second precision.
	started map[types.NamespacedName]start
}

type start struct {
	uid types.UID
	at  time.Time
}

var _ reconcile.Reconciler = (*Simulator)(nil)

// New returns a Simulator that reads and writes through c. With a
// controller-runtime manager, pass mgr.GetClient() and call SetupWithManager;
// for Run, c must also implement client.WithWatch.
func New(c client.Client, opts Options) (*Simulator, error) {
	if c == nil {
		return nil, errors.New("executor: nil client")
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, opts.MetricsNamespace)
	if err != nil {
		return nil, err
	}
	return &Simulator{client: c, opts: opts, metrics: m, started: map[types.NamespacedName]start{}}, nil
}

// SetupWithManager registers the Simulator as a controller of mgr, watching
// WorkflowExecutions of Options.Namespace. The Simulator must have been made
// with mgr's client (or another client of the same API server).
func (s *Simulator) SetupWithManager(mgr ctrl.Manager) error {
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == s.opts.Namespace
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(s.opts.ControllerName).
		For(&v1alpha1.WorkflowExecution{}, builder.WithPredicates(inNamespace)).
		Complete(s)
}

// Reconcile makes at most one transition of one execution and asks to be
// called again when the next one is due. It never waits.
func (s *Simulator) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.Namespace != s.opts.Namespace {
		return reconcile.Result{}, nil
	}
	after, err := s.step(ctx, req.NamespacedName)
	return reconcile.Result{RequeueAfter: after}, err
}

// step reads one execution and makes the transition due, if any. It returns
// how long until the next one is due (0: none is).
func (s *Simulator) step(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
	var wfe v1alpha1.WorkflowExecution
	if err := s.client.Get(ctx, key, &wfe); err != nil {
		if apierrors.IsNotFound(err) {
			s.forget(key)
			return 0, nil
		}
		return 0, fmt.Errorf("get workflowexecution %s: %w", key, err)
	}
	if wfe.DeletionTimestamp != nil {
		s.forget(key)
		return 0, nil
	}
	switch wfe.EffectivePhase() {
	case v1alpha1.WorkflowPending:
		return s.start(ctx, key, &wfe)
	case v1alpha1.WorkflowRunning:
		return s.finish(ctx, key, &wfe)
	default:
		// Terminal, whoever made it so: never touched.
		s.forget(key)
		return 0, nil
	}
}

func (s *Simulator) start(ctx context.Context, key types.NamespacedName, wfe *v1alpha1.WorkflowExecution) (time.Duration, error) {
	now := s.opts.Clock.Now()
	wfe.Status.Phase = v1alpha1.WorkflowRunning
	wfe.Status.Reason = ReasonSimulatedStart
	wfe.Status.Message = fmt.Sprintf("simulated execution started; it ends after %v", s.opts.Duration)
	wfe.Status.StartedAt = &metav1.Time{Time: now}
	wfe.Status.CompletedAt = nil
	if err := s.write(ctx, wfe); err != nil {
		return s.writeFailed(ctx, key, err)
	}
	s.mu.Lock()
	s.started[key] = start{uid: wfe.UID, at: now}
	s.mu.Unlock()
	s.metrics.transitions.WithLabelValues(string(v1alpha1.WorkflowRunning)).Inc()
	logr.FromContextOrDiscard(ctx).V(1).Info("simulated execution started", "workflowExecution", key.Name)
	return s.opts.Duration, nil
}

func (s *Simulator) finish(ctx context.Context, key types.NamespacedName, wfe *v1alpha1.WorkflowExecution) (time.Duration, error) {
	now := s.opts.Clock.Now()
	due := s.startedAt(key, wfe, now).Add(s.opts.Duration)
	if now.Before(due) {
		return due.Sub(now), nil
	}
	phase, reason, msg := v1alpha1.WorkflowCompleted, ReasonSimulatedSuccess, "simulated execution completed"
	if s.fails() {
		phase, reason = v1alpha1.WorkflowFailed, ReasonSimulatedFailure
		msg = fmt.Sprintf("simulated failure (failure rate %v)", s.opts.FailureRate)
	}
	wfe.Status.Phase = phase
	wfe.Status.Reason = reason
	wfe.Status.Message = msg
	wfe.Status.CompletedAt = &metav1.Time{Time: now}
	if err := s.write(ctx, wfe); err != nil {
		return s.writeFailed(ctx, key, err)
	}
	s.forget(key)
	s.metrics.transitions.WithLabelValues(string(phase)).Inc()
	logr.FromContextOrDiscard(ctx).V(1).Info("simulated execution ended", "workflowExecution", key.Name, "phase", phase)
	return 0, nil
}

// write updates wfe's status on the condition that wfe's resourceVersion is
// still current, so a decision made on a stale copy can never overwrite a
// newer status (a terminal one set by the orchestrator, say).
func (s *Simulator) write(ctx context.Context, wfe *v1alpha1.WorkflowExecution) error {
	if wfe.ResourceVersion == "" {
		return errors.New("no resourceVersion to make the write conditional on")
	}
	return s.client.Status().Update(ctx, wfe)
}

// writeFailed turns a failed write into the step's outcome. A Conflict means
// someone wrote a newer version: read again soon (its watch event normally
// triggers that first). NotFound means the execution is gone: nothing is due.
func (s *Simulator) writeFailed(ctx context.Context, key types.NamespacedName, err error) (time.Duration, error) {
	switch {
	case apierrors.IsConflict(err):
		s.metrics.conflicts.Inc()
		logr.FromContextOrDiscard(ctx).V(1).Info("status changed meanwhile; reading again", "workflowExecution", key.Name)
		return conflictRequeue, nil
	case apierrors.IsNotFound(err):
		s.forget(key)
		return 0, nil
	default:
		return 0, fmt.Errorf("update workflowexecution %s status: %w", key, err)
	}
}

// startedAt is when the running execution's Duration counts from: the exact
// time this process started it, else status.startedAt, else (someone else
// set Running without a start time) the first time this process saw it.
func (s *Simulator) startedAt(key types.NamespacedName, wfe *v1alpha1.WorkflowExecution, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.started[key]; ok && st.uid == wfe.UID {
		return st.at
	}
	at := now
	if wfe.Status.StartedAt != nil {
		at = wfe.Status.StartedAt.Time
	}
	s.started[key] = start{uid: wfe.UID, at: at}
	return at
}

func (s *Simulator) forget(key types.NamespacedName) {
	s.mu.Lock()
	delete(s.started, key)
	s.mu.Unlock()
}

func (s *Simulator) fails() bool {
	if s.opts.FailureRate <= 0 {
		return false
	}
	s.randMu.Lock()
	defer s.randMu.Unlock()
	return s.opts.Rand() < s.opts.FailureRate
}
