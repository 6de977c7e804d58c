package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{http.MethodGet, PathAlertmanager, "POST"},
		{http.MethodPut, PathKubernetesEvent, "POST"},
		{http.MethodPost, PathHealthz, "GET, HEAD"},
		{http.MethodDelete, PathReadyz, "GET, HEAD"},
		{http.MethodPost, PathMetrics, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			// The method is checked before the token: no header needed.
			rec := e.do(t, tc.method, tc.path, nil, nil)
			decodeProblem(t, rec, http.StatusMethodNotAllowed, ProblemMethod)
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestUnsupportedMediaType(t *testing.T) {
	e := newEnv(t, nil)
	body := webhook(t, firing("X", "shop", "pod", "a"))
	auth := "Bearer " + goodToken
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"missing", map[string]string{"Authorization": auth}, http.StatusUnsupportedMediaType},
		{"text", map[string]string{"Authorization": auth, "Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form", map[string]string{"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"gzip", map[string]string{"Authorization": auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}, http.StatusUnsupportedMediaType},
		{"charset parameter", map[string]string{"Authorization": auth, "Content-Type": "application/json; charset=utf-8"}, http.StatusCreated},
		{"upper case", map[string]string{"Authorization": auth, "Content-Type": "Application/JSON"}, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, http.MethodPost, PathAlertmanager, body, tc.headers)
			if tc.status != http.StatusUnsupportedMediaType {
				// The same alert each time: created, then joined.
				if rec.Code != http.StatusCreated && rec.Code != http.StatusAccepted {
					t.Fatalf("status %d, want 201 or 202; body %s", rec.Code, rec.Body)
				}
				return
			}
			decodeProblem(t, rec, tc.status, ProblemMediaType)
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 64 })
	body := webhook(t, firing("X", "shop", "pod", "a")) // well over 64 bytes
	headers := map[string]string{"Authorization": "Bearer " + goodToken, "Content-Type": "application/json"}

	// Declared length over the limit: refused before reading.
	decodeProblem(t, e.do(t, http.MethodPost, PathAlertmanager, body, headers), http.StatusRequestEntityTooLarge, ProblemTooLarge)

	// Unknown length (chunked): refused by http.MaxBytesReader while
	// reading.
	req := httptest.NewRequest(http.MethodPost, PathKubernetesEvent, io.NopCloser(strings.NewReader(string(body))))
	req.ContentLength = -1
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	decodeProblem(t, rec, http.StatusRequestEntityTooLarge, ProblemTooLarge)
	if n := len(e.dedup.recorded()); n != 0 {
		t.Errorf("recorded %d incidents, want 0", n)
	}
}

// A body that cannot be read (the client went away mid-body) is a 400.
func TestBodyReadError(t *testing.T) {
	e := newEnv(t, nil)
	req := httptest.NewRequest(http.MethodPost, PathAlertmanager, iotest.ErrReader(errors.New("connection reset")))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+goodToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	decodeProblem(t, rec, http.StatusBadRequest, ProblemInvalid)
}

func TestNotFound(t *testing.T) {
	e := newEnv(t, nil)
	p := decodeProblem(t, e.do(t, http.MethodPost, "/api/v1/signals/nagios", nil, nil), http.StatusNotFound, ProblemNotFound)
	if p.Instance != "/api/v1/signals/nagios" {
		t.Errorf("instance %q", p.Instance)
	}
	if got := counterValue(t, e.reg, MetricHTTPRequests, map[string]string{"route": routeOther, "code": "404"}); got != 1 {
		t.Errorf("requests{route=other,code=404} = %v, want 1", got)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var readyErr error
	e := newEnv(t, func(c *Config) {
		c.ReadyCheck = func(context.Context) error { return readyErr }
	})
	for _, path := range []string{PathHealthz, PathReadyz} {
		if rec := e.do(t, http.MethodGet, path, nil, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, rec.Code)
		}
	}
	readyErr = errors.New("connection refused")
	p := decodeProblem(t, e.do(t, http.MethodGet, PathReadyz, nil, nil), http.StatusServiceUnavailable, ProblemNotReady)
	if !strings.Contains(p.Detail, "connection refused") {
		t.Errorf("detail %q does not carry the check's error", p.Detail)
	}
	// Liveness does not depend on the API server.
	if rec := e.do(t, http.MethodGet, PathHealthz, nil, nil); rec.Code != http.StatusOK {
		t.Errorf("GET /healthz = %d while the API server is down, want 200", rec.Code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	rec := e.do(t, http.MethodGet, PathMetrics, nil, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	for _, want := range []string{
		`gateway_http_requests_total{code="201",route="alertmanager"} 1`,
		`gateway_signals_total{outcome="created"} 1`,
		`gateway_signals_in_flight 0`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A Registerer that is not a Gatherer and no Gatherer: nothing to serve.
	e2 := newEnv(t, func(c *Config) { c.Registerer = registererOnly{prometheus.NewRegistry()} })
	decodeProblem(t, e2.do(t, http.MethodGet, PathMetrics, nil, nil), http.StatusNotFound, ProblemMetricsDisabled)
}

type registererOnly struct{ prometheus.Registerer }
