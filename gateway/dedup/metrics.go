package dedup

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
)

// Attempt results, a bounded label.
const (
	resultWritten  = "written"  // the batch was counted
	resultHeld     = "held"     // another writer held the fingerprint's lock
	resultConflict = "conflict" // the request changed between read and write
	resultExists   = "exists"   // another writer created the same generation first
	resultLost     = "lost"     // the lock was lost before the write
	resultError    = "error"    // the API server failed
	resultIdle     = "idle"     // every caller of the batch had gone
	// A write failed without saying whether it was applied, and reading
	// the request back showed it was not: the batch is retried.
	resultNotApplied = "not_applied"
	// A write failed without saying whether it was applied, and reading
	// the request back did not tell: the batch may have been counted.
	resultUnknown = "unknown"
)

// maxAttemptLabel caps the attempt label of the backoff histogram, so a
// large MaxAttempts cannot grow the label set without bound.
const maxAttemptLabel = 10

type metrics struct {
	attempts  *prometheus.CounterVec
	successes prometheus.Counter
	exhausted prometheus.Counter
	backoff   *prometheus.HistogramVec
	batch     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "retry", Name: "attempts_total",
			Help: "Attempts of the deduplication loop, by result (written, held, conflict, exists, lost, error, idle, not_applied, unknown).",
		}, []string{"result"}),
		successes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "retry", Name: "successes_total",
			Help: "Batches counted after at least one failed attempt.",
		}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "retry", Name: "exhausted_total",
			Help: "Batches that ran out of attempts; their signals were answered 503.",
		}),
		backoff: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gateway", Subsystem: "retry", Name: "backoff_seconds",
			Help:    "Waits between attempts, by the number of the attempt that failed (10 stands for 10 and above).",
			Buckets: []float64{0, .025, .05, .1, .2, .4, .8, 1.6},
		}, []string{"attempt"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "gateway", Subsystem: "dedup", Name: "batch_size",
			Help:    "Signals counted by one write: concurrent identical signals of one replica share a write.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.attempts, &err)
	collector.Register(reg, &m.successes, &err)
	collector.Register(reg, &m.exhausted, &err)
	collector.Register(reg, &m.backoff, &err)
	collector.Register(reg, &m.batch, &err)
	if err != nil {
		return nil, fmt.Errorf("dedup: register metrics: %w", err)
	}
	return m, nil
}

func attemptLabel(attempt int) string {
	return strconv.Itoa(min(attempt, maxAttemptLabel))
}
