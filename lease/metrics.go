package lease

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
)

// metrics are the Locker's collectors. Labels are bounded enums (method,
// path, outcome, reason, operation); keys never appear in labels.
type metrics struct {
	attempts        *prometheus.CounterVec   // method: try|wait
	acquisitions    *prometheus.CounterVec   // path: create|takeover|handoff
	contention      *prometheus.CounterVec   // where: local|remote
	wakeups         *prometheus.CounterVec   // reason: changed|deleted|expired|poll
	apiErrors       *prometheus.CounterVec   // operation: get|create|update|delete|watch|list
	acquireDuration *prometheus.HistogramVec // outcome: acquired|held|error|canceled
	holdDuration    prometheus.Histogram
	renewals        prometheus.Counter
	renewalFailures prometheus.Counter
	losses          *prometheus.CounterVec // reason: deadline|taken_over|deleted|forced
	takeovers       prometheus.Counter
	releases        *prometheus.CounterVec // outcome: deleted|handoff|lost|error
	handoffs        prometheus.Counter
	held            prometheus.Gauge
	swept           prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, namespace string) (*metrics, error) {
	const sub = "lock"
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "acquire_attempts_total",
			Help: "Calls to TryAcquire (method=try) and Acquire (method=wait).",
		}, []string{"method"}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "acquisitions_total",
			Help: "Successful acquisitions by path: create (free key), takeover (expired Lease), handoff (local waiter).",
		}, []string{"path"}),
		contention: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "contention_total",
			Help: "Acquisition calls that found the key held, locally (same Locker) or remotely (another holder in the Lease); once per call, however long it waits.",
		}, []string{"where"}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "wait_wakeups_total",
			Help: "Rounds of Acquire waiting for a Lease held by another process, by what ended them: changed (a renewal or new holder seen), deleted, expired (by observation), poll (backoff delay without a working watch).",
		}, []string{"reason"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "api_errors_total",
			Help: "API calls that failed for a reason other than the expected contention outcomes.",
		}, []string{"operation"}),
		acquireDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "acquire_duration_seconds",
			Help:    "Time spent in TryAcquire and Acquire, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
		holdDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "hold_duration_seconds",
			Help:    "Time from acquisition to release or loss.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 1800},
		}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "renewals_total",
			Help: "Successful renewals.",
		}),
		renewalFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "renewal_failures_total",
			Help: "Renewals that failed (the lock may still be held until its safe deadline).",
		}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "losses_total",
			Help: "Locks lost, by reason: deadline, taken_over, deleted, forced.",
		}, []string{"reason"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "takeovers_total",
			Help: "Expired Leases taken over.",
		}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "releases_total",
			Help: "Releases by outcome: deleted, handoff, lost, error.",
		}, []string{"outcome"}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "local_handoffs_total",
			Help: "Locks handed to a local waiter with one Update instead of a Delete.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "held",
			Help: "Locks currently held.",
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "swept_total",
			Help: "Stale Leases deleted by the sweeper.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.attempts, &err)
	collector.Register(reg, &m.acquisitions, &err)
	collector.Register(reg, &m.contention, &err)
	collector.Register(reg, &m.wakeups, &err)
	collector.Register(reg, &m.apiErrors, &err)
	collector.Register(reg, &m.acquireDuration, &err)
	collector.Register(reg, &m.holdDuration, &err)
	collector.Register(reg, &m.renewals, &err)
	collector.Register(reg, &m.renewalFailures, &err)
	collector.Register(reg, &m.losses, &err)
	collector.Register(reg, &m.takeovers, &err)
	collector.Register(reg, &m.releases, &err)
	collector.Register(reg, &m.handoffs, &err)
	collector.Register(reg, &m.held, &err)
	collector.Register(reg, &m.swept, &err)
	if err != nil {
		return nil, fmt.Errorf("lease: register metrics: %w", err)
	}
	return m, nil
}
