package executor

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Simulator's collectors. The only label is a phase, a
// bounded enum; execution names never appear in labels.
type metrics struct {
	transitions *prometheus.CounterVec // phase: Running|Completed|Failed
	conflicts   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, namespace string) (*metrics, error) {
	const sub = "simulator"
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "transitions_total",
			Help: "Simulated WorkflowExecution transitions written, by the phase entered.",
		}, []string{"phase"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "conflicts_total",
			Help: "Status writes rejected because the execution had changed since it was read.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	register(reg, &m.transitions, &err)
	register(reg, &m.conflicts, &err)
	if err != nil {
		return nil, fmt.Errorf("executor: register metrics: %w", err)
	}
	return m, nil
}

// register registers *c, or replaces it by the identical collector another
// Simulator registered first, so several Simulators can share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C, errp *error) {
	if *errp != nil {
		return
	}
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
	case errors.As(err, &are):
		existing, ok := are.ExistingCollector.(C)
		if !ok {
			*errp = err
			return
		}
		*c = existing
	default:
		*errp = err
	}
}
