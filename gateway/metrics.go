package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/internal/collector"
)

// Metric names, all prefixed gateway_. Lock and retry metrics come from the
// lease and dedup packages (gateway_lock_*); they are not repeated here.
const (
	MetricHTTPRequests     = "gateway_http_requests_total"
	MetricHTTPDuration     = "gateway_http_request_duration_seconds"
	MetricSignals          = "gateway_signals_total"
	MetricSignalsInFlight  = "gateway_signals_in_flight"
	MetricAuthReviews      = "gateway_auth_reviews_total"
	MetricAuthCacheLookups = "gateway_auth_cache_lookups_total"
	MetricAuthRefused      = "gateway_auth_refused_total"
)

// Values of the route label: a fixed set, whatever paths clients ask for.
const (
	routeAlertmanager    = "alertmanager"
	routeKubernetesEvent = "kubernetes-event"
	routeHealthz         = "healthz"
	routeReadyz          = "readyz"
	routeMetrics         = "metrics"
	routeOther           = "other"
)

// Values of the outcome label of gateway_signals_total. Every entry of a
// decoded payload is counted exactly once, under one of these.
const (
	OutcomeCreated   = "created"
	OutcomeDuplicate = "duplicate"
	OutcomeIgnored   = "ignored"
	OutcomeRejected  = "rejected"
	// OutcomeError: the entry was not recorded or may not have been (a
	// dedup error, the deadline, or an earlier failure in its batch that
	// stopped the batch before the entry was tried).
	OutcomeError = "error"
)

type metrics struct {
	requests    *prometheus.CounterVec   // route, code
	duration    *prometheus.HistogramVec // route
	signals     *prometheus.CounterVec   // outcome
	inFlight    prometheus.Gauge
	authReviews *prometheus.CounterVec // review (token|access), result (allowed|denied|error)
	authCache   *prometheus.CounterVec // result (hit|miss)
	authRefused *prometheus.CounterVec // reason (malformed|capacity)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHTTPRequests,
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricHTTPDuration,
			Help: "Time from receiving a request to having answered it, by route.",
			// From well under the 20ms target to past the default
			// request timeout.
			Buckets: []float64{.001, .0025, .005, .01, .02, .03, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"route"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSignals,
			Help: "Entries of decoded payloads (alerts, events), by outcome: created, duplicate, ignored, rejected, error.",
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricSignalsInFlight,
			Help: "Slots of the in-flight cap held: signals being recorded now, at most MaxInFlight.",
		}),
		authReviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAuthReviews,
			Help: "TokenReview and SubjectAccessReview calls, by review (token, access) and result (allowed, denied, error).",
		}, []string{"review", "result"}),
		authCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAuthCacheLookups,
			Help: "Lookups of the token cache, by result (hit, miss).",
		}, []string{"result"}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAuthRefused,
			Help: "Bearer tokens answered without asking the API server, by reason: malformed (401: not shaped like a bearer token) or capacity (503: every review slot taken).",
		}, []string{"reason"}),
	}
	// Counters with known label values start at zero, so rates exist
	// before the first event.
	for _, o := range []string{OutcomeCreated, OutcomeDuplicate, OutcomeIgnored, OutcomeRejected, OutcomeError} {
		m.signals.WithLabelValues(o)
	}
	for _, r := range []string{refusedMalformed, refusedCapacity} {
		m.authRefused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	collector.Register(reg, &m.requests, &err)
	collector.Register(reg, &m.duration, &err)
	collector.Register(reg, &m.signals, &err)
	collector.Register(reg, &m.inFlight, &err)
	collector.Register(reg, &m.authReviews, &err)
	collector.Register(reg, &m.authCache, &err)
	collector.Register(reg, &m.authRefused, &err)
	if err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	return m, nil
}
