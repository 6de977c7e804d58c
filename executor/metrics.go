package executor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
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
	collector.Register(reg, &m.transitions, &err)
	collector.Register(reg, &m.conflicts, &err)
	if err != nil {
		return nil, fmt.Errorf("executor: register metrics: %w", err)
	}
	return m, nil
}
