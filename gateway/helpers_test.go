package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// testCluster is the Config.Cluster of every test server.
const testCluster = "test"

// goodToken is accepted by the fake TokenReviewer as user "alertmanager".
const goodToken = "good-token"

var t0 = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

// fakeDedup is a Deduplicator in memory: the first incident of a
// fingerprint creates "rr-<fp[:8]>", later ones join it. hook, when set,
// runs first and may return an error instead (or block).
type fakeDedup struct {
	hook func(ctx context.Context, in dedup.Incident) error

	mu        sync.Mutex
	counts    map[string]int64
	incidents []dedup.Incident
}

func newFakeDedup() *fakeDedup { return &fakeDedup{counts: make(map[string]int64)} }

func (f *fakeDedup) Record(ctx context.Context, in dedup.Incident) (dedup.Result, error) {
	if f.hook != nil {
		if err := f.hook(ctx, in); err != nil {
			return dedup.Result{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.incidents = append(f.incidents, in)
	f.counts[in.Fingerprint]++
	n := f.counts[in.Fingerprint]
	res := dedup.Result{Outcome: dedup.Duplicate, Name: rrName(in.Fingerprint), OccurrenceCount: n}
	if n == 1 {
		res.Outcome = dedup.Created
	}
	return res, nil
}

// recorded returns the incidents recorded so far.
func (f *fakeDedup) recorded() []dedup.Incident {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dedup.Incident(nil), f.incidents...)
}

func rrName(fp string) string { return "rr-" + fp[:8] }

// fakeTokens is a TokenReviewer: tokens maps a token to its user; any
// other token is not authenticated. err, when set, fails every call. gate,
// when set, is received from before answering.
type fakeTokens struct {
	tokens map[string]authenticationv1.UserInfo
	err    error
	gate   chan struct{}
	calls  atomic.Int32
}

func newFakeTokens() *fakeTokens {
	return &fakeTokens{tokens: map[string]authenticationv1.UserInfo{
		goodToken: {Username: "alertmanager", UID: "uid-1", Groups: []string{"monitoring"}},
	}}
}

func (f *fakeTokens) Create(ctx context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	out := tr.DeepCopy()
	if u, ok := f.tokens[tr.Spec.Token]; ok {
		// As the API server does for a token issued for the audiences asked.
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u, Audiences: tr.Spec.Audiences}
	} else {
		out.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
	}
	return out, nil
}

// fakeAccess is an AccessReviewer that allows the users in allowed and
// remembers the last review.
type fakeAccess struct {
	allowed map[string]bool
	calls   atomic.Int32
	mu      sync.Mutex
	last    authorizationv1.SubjectAccessReviewSpec
}

func (f *fakeAccess) Create(_ context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.last = sar.Spec
	f.mu.Unlock()
	out := sar.DeepCopy()
	out.Status.Allowed = f.allowed[sar.Spec.User]
	if !out.Status.Allowed {
		out.Status.Reason = "no RBAC policy matched"
	}
	return out, nil
}

// env is a test server with its fakes.
type env struct {
	srv    *Server
	dedup  *fakeDedup
	tokens *fakeTokens
	clock  *clocktesting.FakeClock
	reg    *prometheus.Registry
}

// newEnv builds a Server over fakes; mutate adjusts the Config first.
func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	e := &env{
		dedup:  newFakeDedup(),
		tokens: newFakeTokens(),
		clock:  clocktesting.NewFakeClock(t0),
		reg:    prometheus.NewRegistry(),
	}
	cfg := Config{
		Dedup:         e.dedup,
		Cluster:       testCluster,
		Namespace:     "leasehold-system",
		TokenReviewer: e.tokens,
		Registerer:    e.reg,
		Clock:         e.clock,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	return e
}

// post sends body to path with a good token and a JSON content type.
func (e *env) post(t *testing.T, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	return e.do(t, http.MethodPost, path, body, map[string]string{
		"Authorization": "Bearer " + goodToken,
		"Content-Type":  "application/json",
	})
}

func (e *env) do(t *testing.T, method, path string, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// alert is one alert of a webhook built by webhook.
type alert struct {
	status string // default "firing"
	labels map[string]string
}

func firing(name, ns, kindLabel, obj string) alert {
	return alert{labels: map[string]string{"alertname": name, "namespace": ns, kindLabel: obj, "severity": "warning"}}
}

// webhook renders an Alertmanager webhook (version 4) with alerts.
func webhook(t *testing.T, alerts ...alert) []byte {
	t.Helper()
	var list []map[string]any
	for i, a := range alerts {
		status := a.status
		if status == "" {
			status = "firing"
		}
		list = append(list, map[string]any{
			"status":      status,
			"labels":      a.labels,
			"annotations": map[string]string{"summary": "test"},
			"startsAt":    t0.Add(-time.Minute).Format(time.RFC3339),
			"endsAt":      "0001-01-01T00:00:00Z",
			"fingerprint": fmt.Sprintf("%016x", i),
		})
	}
	b, err := json.Marshal(map[string]any{
		"version":           "4",
		"groupKey":          "{}:{}",
		"truncatedAlerts":   0,
		"status":            "firing",
		"receiver":          "leasehold",
		"groupLabels":       map[string]string{},
		"commonLabels":      map[string]string{},
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager:9093",
		"alerts":            list,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// podTarget is the TargetRef the decoder makes of a "pod" label.
func podTarget(ns, name string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: testCluster, APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}
}

// decodeResult decodes a JSON answer body into a Result, checking the
// content type.
func decodeResult(t *testing.T, rec *httptest.ResponseRecorder) Result {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != ContentTypeJSON {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, ContentTypeJSON, rec.Body)
	}
	var r Result
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("decode result %s: %v", rec.Body, err)
	}
	return r
}

// decodeProblem checks that rec is a problem+json answer with status and
// type, and returns it.
func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, typ string) Problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != ContentTypeProblem {
		t.Fatalf("Content-Type = %q, want %q", ct, ContentTypeProblem)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem %s: %v", rec.Body, err)
	}
	if p.Status != status || p.Type != typ || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem = %+v, want status %d, type %s, a title and a detail", p, status, typ)
	}
	return p
}

// errBoom is an error the gateway does not know.
var errBoom = errors.New("boom")

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logSink collects the lines of a funcr logger.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) write(prefix, args string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, prefix+" "+args)
}

func (s *logSink) find(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
