package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/gateway/signal"
)

// A single firing alert creates a request (201), the same alert again
// joins it (202); the incident carries the resolved workload, the object
// the alert named and the receive time.
func TestSingleAlertCreatedThenDuplicate(t *testing.T) {
	pod := podTarget("shop", "checkout-5b7c9d8f4-qv6zt")
	deploy := v1alpha1.TargetRef{Cluster: testCluster, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "checkout"}
	e := newEnv(t, func(c *Config) { c.Resolver = owner.Static{pod: deploy} })
	body := webhook(t, firing("KubePodNotReady", "shop", "pod", pod.Name))
	fp := dedup.Fingerprint(deploy)

	rec := e.post(t, PathAlertmanager, body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("first: status %d, want 201; body %s", rec.Code, rec.Body)
	}
	want := Result{Index: 0, Outcome: OutcomeCreated, RemediationRequest: rrName(fp), OccurrenceCount: 1, Fingerprint: fp}
	if got := decodeResult(t, rec); got != want {
		t.Errorf("first: result %+v, want %+v", got, want)
	}

	e.clock.Step(time.Second)
	rec = e.post(t, PathAlertmanager, body)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("second: status %d, want 202; body %s", rec.Code, rec.Body)
	}
	want.Outcome, want.OccurrenceCount = OutcomeDuplicate, 2
	if got := decodeResult(t, rec); got != want {
		t.Errorf("second: result %+v, want %+v", got, want)
	}

	ins := e.dedup.recorded()
	if len(ins) != 2 {
		t.Fatalf("recorded %d incidents, want 2", len(ins))
	}
	in := ins[0]
	if in.Fingerprint != fp || in.Target != deploy || in.SignalTarget != pod || in.Signal.Target != pod {
		t.Errorf("incident = fingerprint %s target %v signal target %v, want %s %v %v", in.Fingerprint, in.Target, in.SignalTarget, fp, deploy, pod)
	}
	if in.Signal.Name != "KubePodNotReady" || in.Signal.Source != v1alpha1.SourceAlertmanager {
		t.Errorf("incident signal = %s from %s", in.Signal.Name, in.Signal.Source)
	}
	if !in.ReceivedAt.Equal(t0) || !ins[1].ReceivedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("ReceivedAt = %v, %v; want the clock's %v, %v", in.ReceivedAt, ins[1].ReceivedAt, t0, t0.Add(time.Second))
	}
}

// The event route: a Warning event is recorded, a Normal event ignored
// (200 with the reason); real decoder, real payloads.
func TestKubernetesEvent(t *testing.T) {
	e := newEnv(t, nil)
	warning := readTestdata(t, "event_core_pod_warning.json")
	rec := e.post(t, PathKubernetesEvent, warning)
	if rec.Code != http.StatusCreated {
		t.Fatalf("warning event: status %d, want 201; body %s", rec.Code, rec.Body)
	}
	target := podTarget("payments", "payments-api-7d9f8b6c5-x2kqp")
	if r := decodeResult(t, rec); r.Fingerprint != dedup.Fingerprint(target) || r.RemediationRequest == "" || r.OccurrenceCount != 1 {
		t.Errorf("result %+v, want the fingerprint of %v and a request with count 1", r, target)
	}
	if ins := e.dedup.recorded(); len(ins) != 1 || ins[0].Signal.Source != v1alpha1.SourceKubernetesEvent {
		t.Errorf("recorded %+v, want one incident from a kubernetes event", ins)
	}

	rec = e.post(t, PathKubernetesEvent, readTestdata(t, "event_core_pod_normal.json"))
	if rec.Code != http.StatusOK {
		t.Fatalf("normal event: status %d, want 200; body %s", rec.Code, rec.Body)
	}
	if r := decodeResult(t, rec); r.Outcome != OutcomeIgnored || r.Reason == "" || r.RemediationRequest != "" {
		t.Errorf("normal event result %+v, want ignored with a reason", r)
	}
	if n := len(e.dedup.recorded()); n != 1 {
		t.Errorf("recorded %d incidents after a Normal event, want still 1", n)
	}
}

// readTestdata reads a payload of the signal package's test data: the
// same bodies its decoders are tested with.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("signal", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSingleAlertIgnoredAndRejected(t *testing.T) {
	e := newEnv(t, nil)

	resolved := firing("KubePodNotReady", "shop", "pod", "p")
	resolved.status = "resolved"
	rec := e.post(t, PathAlertmanager, webhook(t, resolved))
	if rec.Code != http.StatusOK {
		t.Fatalf("resolved: status %d, want 200; body %s", rec.Code, rec.Body)
	}
	if r := decodeResult(t, rec); r.Outcome != OutcomeIgnored || r.Reason != "alert resolved" {
		t.Errorf("resolved: result %+v, want ignored, \"alert resolved\"", r)
	}

	// No label names a target.
	bad := alert{labels: map[string]string{"alertname": "Foo", "namespace": "shop"}}
	rec = e.post(t, PathAlertmanager, webhook(t, bad))
	p := decodeProblem(t, rec, http.StatusBadRequest, ProblemInvalid)
	if !strings.HasPrefix(p.Field, "alerts[0].") || p.Index == nil || *p.Index != 0 {
		t.Errorf("rejected: problem %+v, want a field under alerts[0] and index 0", p)
	}
	if n := len(e.dedup.recorded()); n != 0 {
		t.Errorf("recorded %d incidents, want 0", n)
	}
}

// A payload the decoder refuses as a whole is a 400 naming the field.
func TestInvalidPayload(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, body, field string
	}{
		{"malformed", `{"version": "4", "alerts": [`, ""},
		{"wrong version", `{"version": "3", "alerts": [{"status": "firing"}]}`, "version"},
		{"no alerts", `{"version": "4", "alerts": []}`, "alerts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := decodeProblem(t, e.post(t, PathAlertmanager, []byte(tc.body)), http.StatusBadRequest, ProblemInvalid)
			if p.Field != tc.field || p.Instance != PathAlertmanager {
				t.Errorf("problem %+v, want field %q and instance %s", p, tc.field, PathAlertmanager)
			}
		})
	}
	p := decodeProblem(t, e.post(t, PathKubernetesEvent, []byte(`{"apiVersion":"v1","kind":"Pod"}`)), http.StatusBadRequest, ProblemInvalid)
	if p.Field != "kind" {
		t.Errorf("event: problem %+v, want field kind", p)
	}
}

// A webhook with several alerts is answered 207 with one result per
// alert: created, duplicate, ignored and rejected side by side.
func TestBatchMixed207(t *testing.T) {
	e := newEnv(t, nil)
	dupTarget := podTarget("shop", "dup")
	// An earlier signal created the request the duplicate joins.
	if rec := e.post(t, PathAlertmanager, webhook(t, firing("A", "shop", "pod", "dup"))); rec.Code != http.StatusCreated {
		t.Fatalf("seed: status %d", rec.Code)
	}
	resolved := firing("B", "shop", "pod", "gone")
	resolved.status = "resolved"
	rec := e.post(t, PathAlertmanager, webhook(t,
		firing("C", "shop", "pod", "new"),
		firing("D", "shop", "pod", "dup"),
		resolved,
		alert{labels: map[string]string{"alertname": "E", "namespace": "shop"}},
	))
	if rec.Code != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != ContentTypeJSON {
		t.Errorf("Content-Type %q", ct)
	}
	var got BatchResult
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	newFP, dupFP := dedup.Fingerprint(podTarget("shop", "new")), dedup.Fingerprint(dupTarget)
	want := []Result{
		{Index: 0, Outcome: OutcomeCreated, RemediationRequest: rrName(newFP), OccurrenceCount: 1, Fingerprint: newFP},
		{Index: 1, Outcome: OutcomeDuplicate, RemediationRequest: rrName(dupFP), OccurrenceCount: 2, Fingerprint: dupFP},
		{Index: 2, Outcome: OutcomeIgnored, Reason: "alert resolved"},
	}
	if len(got.Results) != 4 {
		t.Fatalf("%d results, want 4: %s", len(got.Results), rec.Body)
	}
	for i, w := range want {
		if got.Results[i] != w {
			t.Errorf("result %d = %+v, want %+v", i, got.Results[i], w)
		}
	}
	if r := got.Results[3]; r.Index != 3 || r.Outcome != OutcomeRejected || !strings.HasPrefix(r.Field, "alerts[3].") || r.Error == "" {
		t.Errorf("result 3 = %+v, want rejected with a field under alerts[3] and an error", r)
	}
	for outcome, want := range map[string]float64{OutcomeCreated: 2, OutcomeDuplicate: 1, OutcomeIgnored: 1, OutcomeRejected: 1, OutcomeError: 0} {
		if got := counterValue(t, e.reg, MetricSignals, map[string]string{"outcome": outcome}); got != want {
			t.Errorf("%s{outcome=%s} = %v, want %v", MetricSignals, outcome, got, want)
		}
	}
}

// One alert of a batch failing for a retryable reason fails the whole
// batch with 503 and Retry-After, whatever the others did; each error maps
// to its code.
func TestBatchFailureFailsWholeBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		typ    string
	}{
		{"busy", fmt.Errorf("dedup: fingerprint x: %w", dedup.ErrBusy), http.StatusServiceUnavailable, ProblemBusy},
		{"unavailable", fmt.Errorf("dedup: %w: 500", dedup.ErrUnavailable), http.StatusServiceUnavailable, ProblemUnavailable},
		{"api call timeout is unavailable", fmt.Errorf("%w: %w", dedup.ErrUnavailable, context.DeadlineExceeded), http.StatusServiceUnavailable, ProblemUnavailable},
		{"deadline", fmt.Errorf("dedup: fingerprint x: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, ProblemDeadline},
		{"not recorded", fmt.Errorf("%w: fingerprint x: %w", dedup.ErrNotRecorded, context.DeadlineExceeded), http.StatusServiceUnavailable, ProblemDeadline},
		{"outcome unknown", fmt.Errorf("%w: update rr-x: %w", dedup.ErrUnknownOutcome, context.DeadlineExceeded), http.StatusGatewayTimeout, ProblemUnavailable},
		{"unknown", errBoom, http.StatusInternalServerError, ProblemInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			failFP := dedup.Fingerprint(podTarget("shop", "b"))
			e.dedup.hook = func(_ context.Context, in dedup.Incident) error {
				if in.Fingerprint == failFP {
					return tc.err
				}
				return nil
			}
			rec := e.post(t, PathAlertmanager, webhook(t,
				firing("X", "shop", "pod", "a"), firing("X", "shop", "pod", "b"), firing("X", "shop", "pod", "c")))
			p := decodeProblem(t, rec, tc.status, tc.typ)
			if p.Index == nil || *p.Index != 1 || !strings.Contains(p.Detail, failFP) {
				t.Errorf("problem %+v, want index 1 and the fingerprint in the detail", p)
			}
			ra := rec.Header().Get("Retry-After")
			if tc.status == http.StatusServiceUnavailable && ra != "1" {
				t.Errorf("Retry-After = %q, want \"1\"", ra)
			}
			if tc.status != http.StatusServiceUnavailable && ra != "" {
				t.Errorf("Retry-After = %q on %d", ra, tc.status)
			}
			if got := counterValue(t, e.reg, MetricSignals, map[string]string{"outcome": OutcomeError}); got < 1 {
				t.Errorf("%s{outcome=error} = %v, want at least 1", MetricSignals, got)
			}
		})
	}
}

// Once an entry failed, entries not yet started are not started: each
// would be counted again when the sender retries the batch.
func TestBatchStopsAfterFailure(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BatchConcurrency = 1 })
	calls := 0
	e.dedup.hook = func(context.Context, dedup.Incident) error {
		calls++ // BatchConcurrency 1: one goroutine
		return dedup.ErrBusy
	}
	rec := e.post(t, PathAlertmanager, webhook(t,
		firing("X", "shop", "pod", "a"), firing("X", "shop", "pod", "b"), firing("X", "shop", "pod", "c")))
	decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemBusy)
	if calls != 1 {
		t.Errorf("Record called %d times, want 1", calls)
	}
	if got := counterValue(t, e.reg, MetricSignals, map[string]string{"outcome": OutcomeError}); got != 3 {
		t.Errorf("%s{outcome=error} = %v, want 3 (every entry counted once)", MetricSignals, got)
	}
}

// The alerts of one webhook are recorded concurrently, at most
// BatchConcurrency at a time.
func TestBatchConcurrency(t *testing.T) {
	const n, limit = 12, 4
	e := newEnv(t, func(c *Config) { c.BatchConcurrency = limit })
	var mu sync.Mutex
	var cur, peak int
	release := make(chan struct{})
	e.dedup.hook = func(ctx context.Context, _ dedup.Incident) error {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		cur--
		mu.Unlock()
		return nil
	}
	var alerts []alert
	for i := range n {
		alerts = append(alerts, firing("X", "shop", "pod", fmt.Sprintf("p%d", i)))
	}
	done := make(chan int)
	go func() { done <- e.post(t, PathAlertmanager, webhook(t, alerts...)).Code }()
	waitFor(t, "BatchConcurrency recordings in flight", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cur == limit
	})
	if g := gaugeValue(t, e.reg, MetricSignalsInFlight); g != limit {
		t.Errorf("%s = %v while the batch runs, want %d", MetricSignalsInFlight, g, limit)
	}
	close(release)
	if code := <-done; code != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207", code)
	}
	if peak != limit {
		t.Errorf("peak concurrency %d, want %d", peak, limit)
	}
	if g := gaugeValue(t, e.reg, MetricSignalsInFlight); g != 0 {
		t.Errorf("%s = %v after the batch, want 0", MetricSignalsInFlight, g)
	}
}

// Beyond MaxInFlight the answer is 503 at once (no waiting), with
// Retry-After; nothing of the refused request is recorded.
func TestInFlightCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxInFlight = 2; c.RetryAfter = 1500 * time.Millisecond })
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	e.dedup.hook = func(ctx context.Context, _ dedup.Incident) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	first := make(chan int)
	go func() { first <- e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a"))).Code }()
	<-entered
	if g := gaugeValue(t, e.reg, MetricSignalsInFlight); g != 1 {
		t.Errorf("in flight = %v, want 1", g)
	}

	// Two firing alerts need two slots; one is left.
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "b"), firing("X", "shop", "pod", "c")))
	p := decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemOverloaded)
	if ra := rec.Header().Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q, want \"2\" (1.5s rounded up)", ra)
	}
	if !strings.Contains(p.Detail, "send it again whole") {
		t.Errorf("detail %q does not say to retry the whole payload", p.Detail)
	}

	// A single alert fits in the slot left.
	second := make(chan int)
	go func() { second <- e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "d"))).Code }()
	<-entered
	rec = e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "e")))
	decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemOverloaded)

	close(release)
	if c1, c2 := <-first, <-second; c1 != http.StatusCreated || c2 != http.StatusCreated {
		t.Errorf("held requests answered %d, %d; want 201, 201", c1, c2)
	}
	if n := len(e.dedup.recorded()); n != 2 {
		t.Errorf("recorded %d incidents, want 2 (refused requests record nothing)", n)
	}
	if g := gaugeValue(t, e.reg, MetricSignalsInFlight); g != 0 {
		t.Errorf("in flight = %v at the end, want 0", g)
	}
	// The cap is free again.
	if rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "b"), firing("X", "shop", "pod", "c"))); rec.Code != http.StatusMultiStatus {
		t.Errorf("after release: status %d, want 207", rec.Code)
	}
}

// A request still recording when RequestTimeout passes is answered 504.
func TestRequestDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = 20 * time.Millisecond })
	e.dedup.hook = func(ctx context.Context, in dedup.Incident) error {
		<-ctx.Done() // a write that does not finish in time
		return fmt.Errorf("dedup: fingerprint %s: %w", in.Fingerprint, context.Cause(ctx))
	}
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a"), firing("X", "shop", "pod", "b")))
	decodeProblem(t, rec, http.StatusGatewayTimeout, ProblemDeadline)
	if got := counterValue(t, e.reg, MetricHTTPRequests, map[string]string{"route": routeAlertmanager, "code": "504"}); got != 1 {
		t.Errorf("requests{code=504} = %v, want 1", got)
	}
}

// Every line about a recorded signal names its fingerprint and request.
func TestSignalLogs(t *testing.T) {
	var sink logSink
	e := newEnv(t, func(c *Config) {
		c.Logger = funcr.New(sink.write, funcr.Options{Verbosity: 1})
	})
	fp := dedup.Fingerprint(podTarget("shop", "a"))
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	e.dedup.hook = func(context.Context, dedup.Incident) error { return dedup.ErrBusy }
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	lines := sink.find(`"fingerprint"="` + fp + `"`)
	if len(lines) != 3 {
		t.Fatalf("%d lines carry the fingerprint, want 3 (created, joined, failed): %q", len(lines), sink.lines)
	}
	for _, l := range lines[:2] {
		if !strings.Contains(l, `"remediationRequest"="`+rrName(fp)+`"`) || !strings.Contains(l, `"route"="alertmanager"`) || !strings.Contains(l, `"user"="alertmanager"`) {
			t.Errorf("line lacks the request name, route or user: %s", l)
		}
	}
	if !strings.Contains(lines[2], `"remediationRequest"=""`) || !strings.Contains(lines[2], dedup.ErrBusy.Error()) {
		t.Errorf("failure line %s, want an empty request name and the error", lines[2])
	}
}

// Decoder output the contract rules out is a 500, never a silent success.
func TestDecoderContractViolation(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.decodeAlerts = func([]byte, signal.Options) ([]signal.Item, error) {
		return []signal.Item{{Disposition: signal.Fire}, {Disposition: signal.Fire, Signal: &signal.Signal{Name: "X", Target: podTarget("shop", "a")}}}, nil
	}
	decodeProblem(t, e.post(t, PathAlertmanager, []byte(`{}`)), http.StatusInternalServerError, ProblemInternal)
	if n := len(e.dedup.recorded()); n != 0 {
		t.Errorf("recorded %d incidents of a broken payload, want 0", n)
	}
}

// The answer tells the sender whether sending the signal again is safe:
// 503 when it was certainly not counted, 504 only when it may have been,
// and the real answer when its write finishes after the deadline.
func TestAnswerSaysWhetherCounted(t *testing.T) {
	for _, tc := range []struct {
		name       string
		timeout    time.Duration
		hook       func(ctx context.Context, in dedup.Incident) error
		status     int
		typ        string
		retryAfter string
		detail     string
	}{
		{
			name:    "deadline before the write",
			timeout: 20 * time.Millisecond,
			hook: func(ctx context.Context, in dedup.Incident) error {
				<-ctx.Done()
				return fmt.Errorf("%w: fingerprint %s: %w", dedup.ErrNotRecorded, in.Fingerprint, context.Cause(ctx))
			},
			status: http.StatusServiceUnavailable, typ: ProblemDeadline, retryAfter: "1",
			detail: "the signal was not counted and may be sent again",
		},
		{
			name: "outcome unknown",
			hook: func(_ context.Context, in dedup.Incident) error {
				return fmt.Errorf("%w: update rr-%s: connection reset by peer", dedup.ErrUnknownOutcome, in.Fingerprint[:8])
			},
			status: http.StatusGatewayTimeout, typ: ProblemUnavailable,
			detail: "the signal may have been counted",
		},
		{
			name:    "write in flight finishes after the deadline",
			timeout: 20 * time.Millisecond,
			hook: func(ctx context.Context, _ dedup.Incident) error {
				<-ctx.Done()
				return nil // then counted: the answer is the write's
			},
			status: http.StatusCreated,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.timeout > 0 {
					c.RequestTimeout = tc.timeout
				}
			})
			e.dedup.hook = tc.hook
			rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if tc.typ == "" {
				if rec.Code != tc.status {
					t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
				}
				return
			}
			p := decodeProblem(t, rec, tc.status, tc.typ)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not say %q", p.Detail, tc.detail)
			}
		})
	}
}

// When one entry's outcome is unknown, the payload is answered 504 even
// if another entry failed first with a 503 error: a 503 would claim that
// sending the payload again is safe.
func TestUnknownOutcomeWinsOverEarlierFailure(t *testing.T) {
	e := newEnv(t, nil)
	fpA, fpB := dedup.Fingerprint(podTarget("shop", "a")), dedup.Fingerprint(podTarget("shop", "b"))
	bStarted := make(chan struct{})
	e.dedup.hook = func(_ context.Context, in dedup.Incident) error {
		switch in.Fingerprint {
		case fpA:
			<-bStarted // both entries are in flight
			return fmt.Errorf("dedup: fingerprint %s: %w", fpA, dedup.ErrBusy)
		case fpB:
			close(bStarted)
			return fmt.Errorf("%w: update rr-x: EOF", dedup.ErrUnknownOutcome)
		}
		return nil
	}
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a"), firing("X", "shop", "pod", "b")))
	p := decodeProblem(t, rec, http.StatusGatewayTimeout, ProblemUnavailable)
	if p.Index == nil || *p.Index != 1 || !strings.Contains(p.Detail, fpB) {
		t.Errorf("problem %+v, want index 1 and fingerprint %s", p, fpB)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After = %q on a 504", ra)
	}
}

// A signal whose owner cannot be determined now is answered 503 with
// Retry-After and a problem that names the object and the reason, and is
// not recorded: recording it under its own object would open a second
// request for the workload's incident. A real owner.Cache over a fake API
// server whose pod reads time out shows the timeout is not guessed away.
func TestOwnerUnresolved(t *testing.T) {
	timeoutCache := func(t *testing.T) owner.Resolver {
		client := newFakeMetadata(t)
		client.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewTimeoutError("slow", 1)
		})
		c, err := owner.New(client, owner.Options{Cluster: testCluster})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	forbidden := owner.Func(func(_ context.Context, obj v1alpha1.TargetRef, _ map[string]string) (v1alpha1.TargetRef, bool, error) {
		return obj, false, &owner.LookupError{Reason: "forbidden", Kind: "ReplicaSet", Namespace: "shop", Name: "web-abc",
			Err: apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-abc", errors.New("no RBAC"))}
	})
	for _, tc := range []struct {
		name     string
		resolver func(t *testing.T) owner.Resolver
		detail   []string
	}{
		{"lookup timed out", timeoutCache, []string{"Pod shop/a: timeout", "not counted"}},
		{"lookup forbidden", func(*testing.T) owner.Resolver { return forbidden }, []string{"ReplicaSet shop/web-abc: forbidden", "not counted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Resolver = tc.resolver(t) })
			rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
			p := decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemOwnerUnresolved)
			if ra := rec.Header().Get("Retry-After"); ra != "1" {
				t.Errorf("Retry-After = %q, want 1", ra)
			}
			for _, d := range tc.detail {
				if !strings.Contains(p.Detail, d) {
					t.Errorf("detail %q does not say %q", p.Detail, d)
				}
			}
			if p.Index == nil || *p.Index != 0 {
				t.Errorf("problem index = %v, want 0", p.Index)
			}
			if n := len(e.dedup.recorded()); n != 0 {
				t.Errorf("recorded %d incidents, want none", n)
			}
		})
	}
}

// One unresolved entry fails its whole webhook with the 503 of that entry:
// the sender resends the webhook whole.
func TestOwnerUnresolvedInBatch(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.BatchConcurrency = 1
		c.Resolver = owner.Func(func(_ context.Context, obj v1alpha1.TargetRef, _ map[string]string) (v1alpha1.TargetRef, bool, error) {
			if obj.Name == "b" {
				return obj, false, &owner.LookupError{Reason: "unavailable", Kind: "Pod", Namespace: "shop", Name: "b", Err: errBoom}
			}
			return obj, false, nil
		})
	})
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a"), firing("X", "shop", "pod", "b")))
	p := decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemOwnerUnresolved)
	if p.Index == nil || *p.Index != 1 || !strings.Contains(p.Detail, "send it again whole") {
		t.Errorf("problem %+v, want index 1 and a request to resend the whole payload", p)
	}
}

// A request whose deadline passes while the owner is being looked up was
// not counted: 503 deadline-exceeded, as for any entry not yet written.
func TestOwnerLookupPastDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RequestTimeout = 20 * time.Millisecond
		c.Resolver = owner.Func(func(ctx context.Context, obj v1alpha1.TargetRef, _ map[string]string) (v1alpha1.TargetRef, bool, error) {
			<-ctx.Done()
			return obj, false, &owner.LookupError{Reason: "canceled", Kind: "Pod", Namespace: "shop", Name: "a", Err: ctx.Err()}
		})
	})
	rec := e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	p := decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemDeadline)
	if !strings.Contains(p.Detail, "not counted") {
		t.Errorf("detail %q does not say the signal was not counted", p.Detail)
	}
	if n := len(e.dedup.recorded()); n != 0 {
		t.Errorf("recorded %d incidents, want none", n)
	}
}

// The resolver gets the alert's labels: a Pod that is gone resolves to its
// Deployment through the owner labels kube-state-metrics exports.
func TestResolverGetsAlertLabels(t *testing.T) {
	isTrue := true
	meta := func(apiVersion, kind, name string, uid types.UID, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: uid, OwnerReferences: owners},
		}
	}
	client := newFakeMetadata(t,
		meta("apps/v1", "Deployment", "checkout", "uid-d"),
		meta("apps/v1", "ReplicaSet", "checkout-5b7c9d8f4", "uid-rs",
			metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "checkout", UID: "uid-d", Controller: &isTrue}))
	resolver, err := owner.New(client, owner.Options{Cluster: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Resolver = resolver })
	a := firing("KubePodCrashLooping", "shop", "pod", "checkout-5b7c9d8f4-gone1")
	a.labels["created_by_kind"], a.labels["created_by_name"] = "ReplicaSet", "checkout-5b7c9d8f4"
	rec := e.post(t, PathAlertmanager, webhook(t, a))
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d, want 201; body %s", rec.Code, rec.Body)
	}
	deploy := v1alpha1.TargetRef{Cluster: testCluster, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "checkout"}
	if r := decodeResult(t, rec); r.Fingerprint != dedup.Fingerprint(deploy) {
		t.Errorf("fingerprint %s, want the Deployment's %s", r.Fingerprint, dedup.Fingerprint(deploy))
	}
}

// newFakeMetadata is a fake metadata client holding objs.
func newFakeMetadata(t *testing.T, objs ...runtime.Object) *metadatafake.FakeMetadataClient {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return metadatafake.NewSimpleMetadataClient(scheme, objs...)
}
