package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/leasehold/leasehold/gateway/dedup"
)

// findMetric returns the metric of family name whose labels include
// labels, or nil.
func findMetric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// counterValue is the value of a counter, 0 if it has no such series.
func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	if m := findMetric(t, g, name, labels); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	m := findMetric(t, g, name, nil)
	if m == nil {
		t.Fatalf("no metric %s", name)
	}
	return m.GetGauge().GetValue()
}

func TestMetricsAfterRequests(t *testing.T) {
	e := newEnv(t, nil)
	body := webhook(t, firing("X", "shop", "pod", "a"))
	e.post(t, PathAlertmanager, body)                                                                         // 201
	e.clock.Step(3 * time.Millisecond)                                                                        //
	e.post(t, PathAlertmanager, body)                                                                         // 202
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "b"), firing("X", "shop", "pod", "c"))) // 207
	e.do(t, http.MethodGet, PathAlertmanager, nil, nil)                                                       // 405
	e.do(t, http.MethodGet, PathHealthz, nil, nil)                                                            // 200
	e.dedup.hook = func(context.Context, dedup.Incident) error { return dedup.ErrUnavailable }
	e.post(t, PathAlertmanager, body) // 503

	want := `
# HELP gateway_http_requests_total HTTP requests answered, by route and status code.
# TYPE gateway_http_requests_total counter
gateway_http_requests_total{code="201",route="alertmanager"} 1
gateway_http_requests_total{code="202",route="alertmanager"} 1
gateway_http_requests_total{code="207",route="alertmanager"} 1
gateway_http_requests_total{code="405",route="alertmanager"} 1
gateway_http_requests_total{code="503",route="alertmanager"} 1
gateway_http_requests_total{code="200",route="healthz"} 1
# HELP gateway_signals_total Entries of decoded payloads (alerts, events), by outcome: created, duplicate, ignored, rejected, error.
# TYPE gateway_signals_total counter
gateway_signals_total{outcome="created"} 3
gateway_signals_total{outcome="duplicate"} 1
gateway_signals_total{outcome="error"} 1
gateway_signals_total{outcome="ignored"} 0
gateway_signals_total{outcome="rejected"} 0
# HELP gateway_signals_in_flight Slots of the in-flight cap held: signals being recorded now, at most MaxInFlight.
# TYPE gateway_signals_in_flight gauge
gateway_signals_in_flight 0
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), MetricHTTPRequests, MetricSignals, MetricSignalsInFlight); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(e.srv.metrics.authReviews.WithLabelValues("token", "allowed")); n != 1 {
		t.Errorf("token reviews = %v, want 1 (cached after the first)", n)
	}
	h := findMetric(t, e.reg, MetricHTTPDuration, map[string]string{"route": routeAlertmanager})
	if h == nil || h.GetHistogram().GetSampleCount() != 5 {
		t.Fatalf("duration histogram for alertmanager = %v, want 5 samples", h)
	}

	// Every metric is gateway_*, and every label is one of a fixed set.
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "gateway_") {
			t.Errorf("metric %s is not gateway_*", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "route", "code", "outcome", "review", "result", "reason":
				default:
					t.Errorf("unexpected label %s on %s", lp.GetName(), mf.GetName())
				}
			}
		}
	}
}

// Two Servers on one registry share the collectors instead of failing.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	e1 := newEnv(t, func(c *Config) { c.Registerer = reg })
	e2 := newEnv(t, func(c *Config) { c.Registerer = reg })
	e1.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	e2.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "b")))
	if got := counterValue(t, reg, MetricSignals, map[string]string{"outcome": OutcomeCreated}); got != 2 {
		t.Errorf("created = %v, want 2", got)
	}
}
