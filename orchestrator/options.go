package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
)

// Options configures the orchestrator. Zero values are replaced by the
// documented defaults in one place (withDefaults); Setup rejects invalid
// values.
type Options struct {
	// Namespace holds the RemediationRequests this orchestrator serves and
	// the WorkflowExecutions it creates. Required. Requests in other
	// namespaces are ignored, whatever the manager's cache covers.
	Namespace string

	// Identity of this replica, typically the pod name (POD_NAME). Required,
	// never defaulted: it appears in Events and logs so that a human can
	// tell which replica started or blocked a request.
	Identity string

	// Locker provides the per-target locks. Required. The caller builds it
	// with Prefix "ro-lock" and MetricsNamespace "orchestrator"; its lease
	// duration bounds how long a crashed replica keeps a target locked.
	Locker lease.Interface

	// RequeueDelay is the mean delay before a request that found its
	// target's lock held is reconciled again; the actual delay is jittered
	// uniformly within ±50% so that replicas do not retry in step.
	// Default 100ms.
	RequeueDelay time.Duration

	// BlockedResync is the slow periodic re-examination of a Blocked
	// request. It is a safety net only: a Blocked request is normally woken
	// by the event of the execution that blocks it. Default 30s.
	BlockedResync time.Duration

	// DefaultTimeout is written into spec.timeout of every execution
	// created. Default 10m.
	DefaultTimeout time.Duration

	// Retention is the age after which terminal requests and executions
	// are deleted; the latest execution of each target and the latest
	// request of each fingerprint are always kept.
	// It must exceed the longest pause a replica may suffer between its
	// lock check and its create (see the package documentation).
	// Default 24h; a negative value disables retention.
	Retention time.Duration

	// RetentionInterval is the period of the retention pass. Default 1m.
	RetentionInterval time.Duration

	// MaxConcurrentReconciles is the number of requests one replica
	// reconciles at once. Default 4.
	MaxConcurrentReconciles int

	// Clock is the source of time for delays, timeouts and the timestamps
	// written. Default clock.RealClock{}.
	Clock clock.Clock

	// Rand returns a uniform float in [0, 1) for jitter. It must be safe
	// for concurrent use. Default: math/rand/v2's Float64 (seeded at
	// start, safe for concurrent use).
	Rand func() float64

	// Registerer receives the orchestrator_* metrics. Nil means metrics are
	// kept but not registered. Collectors already registered by another
	// orchestrator on the same registry are shared.
	Registerer prometheus.Registerer

	// ControllerName names the request controller; the execution timeout
	// controller is named ControllerName + "-timeout". controller-runtime
	// requires names unique per process, so tests that run several
	// replicas in one process give each a distinct name. Default
	// "remediationrequest".
	ControllerName string

	// The fields below are test hooks. They are off by default and must
	// stay off in production.

	// CheckToCreateDelay (test only) stretches the window between the
	// last check that the lock is held and the create of the execution, as
	// a process pause would. The wait runs on Clock and ends early if the
	// reconcile's context ends.
	CheckToCreateDelay time.Duration

	// BeforeCreate (test only), if set, is called in the same window,
	// after CheckToCreateDelay, with the reconcile's context. A test makes
	// it block on a channel to pause a replica deterministically.
	BeforeCreate func(ctx context.Context)

	// ClockOffset (test only) is added to every wall-clock reading of this
	// replica: the timestamps it writes (condition transitions, the
	// completion time of an execution it times out or cancels) and its
	// retention decisions, as if its host clock were off by that much.
	// Timeouts count on this replica's clock from when it first saw an
	// execution, so the offset does not move them.
	ClockOffset time.Duration
}

// withDefaults returns o with zero values replaced by defaults. It is the
// only place defaults live.
func (o Options) withDefaults() Options {
	if o.RequeueDelay == 0 {
		o.RequeueDelay = 100 * time.Millisecond
	}
	if o.BlockedResync == 0 {
		o.BlockedResync = 30 * time.Second
	}
	if o.DefaultTimeout == 0 {
		o.DefaultTimeout = 10 * time.Minute
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = time.Minute
	}
	if o.MaxConcurrentReconciles == 0 {
		o.MaxConcurrentReconciles = 4
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.ControllerName == "" {
		o.ControllerName = "remediationrequest"
	}
	return o
}

// validate checks a defaulted Options.
func (o Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %v", o.Namespace, msgs))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("identity is required"))
	}
	if o.Locker == nil {
		errs = append(errs, errors.New("locker is required"))
	}
	if o.RequeueDelay < 0 {
		errs = append(errs, fmt.Errorf("requeue delay %v: must be positive", o.RequeueDelay))
	}
	if o.BlockedResync < 0 {
		errs = append(errs, fmt.Errorf("blocked resync %v: must be positive", o.BlockedResync))
	}
	if o.DefaultTimeout < 0 {
		errs = append(errs, fmt.Errorf("default timeout %v: must be positive", o.DefaultTimeout))
	}
	if o.RetentionInterval < 0 {
		errs = append(errs, fmt.Errorf("retention interval %v: must be positive", o.RetentionInterval))
	}
	if o.MaxConcurrentReconciles < 0 {
		errs = append(errs, fmt.Errorf("max concurrent reconciles %d: must be positive", o.MaxConcurrentReconciles))
	}
	if o.CheckToCreateDelay < 0 {
		errs = append(errs, fmt.Errorf("check-to-create delay %v: must not be negative", o.CheckToCreateDelay))
	}
	if len(errs) > 0 {
		return fmt.Errorf("orchestrator: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// requeueDelay is RequeueDelay jittered uniformly within ±50%.
func (o Options) requeueDelay() time.Duration {
	return time.Duration(float64(o.RequeueDelay) * (0.5 + o.Rand()))
}

// now is this replica's wall clock, ClockOffset included.
func (o Options) now() time.Time {
	return o.Clock.Now().Add(o.ClockOffset)
}
