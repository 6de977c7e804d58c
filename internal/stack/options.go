package stack

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
)

// ErrInvalidOptions is wrapped by every error Up returns for Options it
// cannot use. Invalid values are reported, never replaced by defaults.
var ErrInvalidOptions = errors.New("stack: invalid options")

// Options configures Up. Zero values take the defaults documented on each
// field; they are filled in one place, resolve.
type Options struct {
	// Namespace the services live in. Default leasehold-system.
	Namespace string
	// Dir holds control plane data, the kubeconfig and the service logs.
	// Default: a new temporary folder, removed by Stop unless KeepData. A
	// folder given here is never removed.
	Dir string
	// KeepData leaves Dir in place on Stop.
	KeepData bool

	// Gateways is the number of `leasehold gateway` replicas. Default 3.
	Gateways int
	// Orchestrators is the number of `leasehold orchestrator` replicas.
	// Default 2.
	Orchestrators int
	// Executable is the leasehold binary the services run as. Default: the
	// running program (os.Executable), so that the services are exactly the
	// code of the command that starts them.
	Executable string

	// LeaseDuration is the services' --lease-duration: how long a killed
	// replica's locks stay held. Default 5s, short so that a replica killed
	// by hand frees its targets quickly; the services' own default is 30s.
	LeaseDuration time.Duration
	// ExecutionDuration is the simulated executor's --duration: how long
	// each WorkflowExecution stays Running. Default 500ms, so that the demo
	// finishes in seconds.
	ExecutionDuration time.Duration
	// ReadyTimeout bounds the wait for every service's /readyz. Default 60s.
	ReadyTimeout time.Duration
	// StopGrace is how long a service may take to exit after SIGTERM before
	// it is killed. Default 10s.
	StopGrace time.Duration
	// DemoTimeout bounds the demo's wait for every RemediationRequest it
	// caused to reach a terminal phase. Default 60s.
	DemoTimeout time.Duration

	// Clock drives the demo's polling and measures its durations. Default
	// clock.RealClock{}.
	Clock clock.WithTicker
}

// Defaults applied to zero fields of Options.
const (
	DefaultNamespace         = "leasehold-system"
	DefaultGateways          = 3
	DefaultOrchestrators     = 2
	DefaultLeaseDuration     = 5 * time.Second
	DefaultExecutionDuration = 500 * time.Millisecond
	DefaultReadyTimeout      = 60 * time.Second
	DefaultStopGrace         = 10 * time.Second
	DefaultDemoTimeout       = 60 * time.Second
)

// resolve fills defaults and validates, and reports every problem at once.
func (o Options) resolve() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		bad("namespace %q: %v", o.Namespace, msgs)
	}
	if o.Gateways == 0 {
		o.Gateways = DefaultGateways
	}
	if o.Orchestrators == 0 {
		o.Orchestrators = DefaultOrchestrators
	}
	if o.Gateways < 0 {
		bad("gateways %d is negative", o.Gateways)
	}
	if o.Orchestrators < 0 {
		bad("orchestrators %d is negative", o.Orchestrators)
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			bad("find the leasehold binary: %v", err)
		}
		o.Executable = exe
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.ExecutionDuration == 0 {
		o.ExecutionDuration = DefaultExecutionDuration
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StopGrace == 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.DemoTimeout == 0 {
		o.DemoTimeout = DefaultDemoTimeout
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"lease duration", o.LeaseDuration}, {"execution duration", o.ExecutionDuration},
		{"ready timeout", o.ReadyTimeout}, {"stop grace", o.StopGrace}, {"demo timeout", o.DemoTimeout},
	} {
		if d.value < 0 {
			bad("%s %v is negative", d.name, d.value)
		}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o, errors.Join(errs...)
}
