package orchestrator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
)

// outcome is the bounded label value of orchestrator_reconcile_total: what
// one reconcile of a request did.
type outcome string

const (
	outcomeStarted   outcome = "started"     // created an execution (for this request or the earliest one)
	outcomeBlocked   outcome = "blocked"     // another execution is active on the target
	outcomeContended outcome = "contended"   // the target's lock was held; requeued
	outcomeFenced    outcome = "fenced"      // the create found the name taken by another request's execution
	outcomeFinished  outcome = "finished"    // moved the request to a terminal phase
	outcomeCancelled outcome = "cancelled"   // handled the deletion of the request; (timeout controller) cancelled an orphan
	outcomeUnchanged outcome = "unchanged"   // nothing to do
	outcomeConflict  outcome = "conflict"    // an optimistic write lost a race; requeued
	outcomeError     outcome = "error"       // an API error; retried with the controller's backoff
	outcomeTimedOut  outcome = "timed_out"   // (timeout controller) failed an execution past its deadline
	outcomeNotYetDue outcome = "not_yet_due" // (timeout controller) requeued at the deadline
)

// metrics are the orchestrator's collectors. Labels are bounded enums
// (phases, reasons, outcomes, kinds); names of requests, targets or
// fingerprints never appear.
type metrics struct {
	transitions       *prometheus.CounterVec // from, to: request phases
	blocks            *prometheus.CounterVec // reason
	pendingToExecute  prometheus.Histogram
	reconciles        *prometheus.CounterVec // controller (request|timeout), outcome
	retentionDeleted  *prometheus.CounterVec // kind
	retentionFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "orchestrator"
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "request_phase_transitions_total",
			Help: "RemediationRequest phase changes written by this replica, by phase before and after (an empty phase counts as Pending).",
		}, []string{"from", "to"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "blocks_total",
			Help: "Requests this replica moved to Blocked, by reason.",
		}, []string{"reason"}),
		pendingToExecute: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "pending_to_executing_seconds",
			Help:    "Time from a request's creation to the status write that made it Executing, on this replica's wall clock.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "reconcile_total",
			Help: "Reconciles by controller (request, timeout) and outcome.",
		}, []string{"controller", "outcome"}),
		retentionDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "retention_deleted_total",
			Help: "Terminal objects deleted by retention, by kind.",
		}, []string{"kind"}),
		retentionFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "retention_failures_total",
			Help: "Retention passes that ended with an error.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.transitions, &err)
	collector.Register(reg, &m.blocks, &err)
	collector.Register(reg, &m.pendingToExecute, &err)
	collector.Register(reg, &m.reconciles, &err)
	collector.Register(reg, &m.retentionDeleted, &err)
	collector.Register(reg, &m.retentionFailures, &err)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: register metrics: %w", err)
	}
	return m, nil
}
