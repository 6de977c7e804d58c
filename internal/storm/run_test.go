package storm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
)

func TestRoundRobin(t *testing.T) {
	// Gateway 0 answers every request 503 (Retry-After 0), so each signal
	// that starts there moves on to gateway 1.
	g0 := newFakeGateway(t, func(int, *http.Request, []byte) reply {
		return reply{code: http.StatusServiceUnavailable, retryAfter: "0"}
	})
	g1 := newFakeGateway(t, nil)
	g2 := newFakeGateway(t, nil)
	rep, err := Run(testContext(t), Config{Targets: []string{g0.URL(), g1.URL() + "/", g2.URL()}, Signals: 30, Concurrency: 7})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := []int{g0.requests(), g1.requests(), g2.requests()}; !slices.Equal(got, []int{10, 20, 10}) {
		t.Fatalf("requests per gateway = %v, want [10 20 10]", got)
	}
	if rep.Attempts != 40 || rep.Retries != 10 || rep.RetriedSignals != 10 || rep.MaxAttempts != 2 || rep.Acknowledged != 30 {
		t.Errorf("attempts %d retries %d retried %d max %d acked %d, want 40 10 10 2 30",
			rep.Attempts, rep.Retries, rep.RetriedSignals, rep.MaxAttempts, rep.Acknowledged)
	}
	for i, want := range []struct {
		attempts int
		final    map[string]int
	}{{10, map[string]int{}}, {20, map[string]int{"201": 20}}, {10, map[string]int{"201": 10}}} {
		pt := rep.PerTarget[i]
		if pt.Attempts != want.attempts || fmt.Sprint(pt.Final) != fmt.Sprint(want.final) {
			t.Errorf("per target %d = %+v, want attempts %d final %v", i, pt, want.attempts, want.final)
		}
	}
	for _, res := range rep.Results {
		wantTarget := []string{g1.URL(), g1.URL(), g2.URL()}[res.Index%3]
		if res.Target != wantTarget {
			t.Errorf("signal %d ended at %s, want %s", res.Index, res.Target, wantTarget)
		}
	}
}

func TestFingerprintAssignment(t *testing.T) {
	g := newFakeGateway(t, nil)
	cfg := Config{Targets: []string{g.URL()}, Signals: 10, Fingerprints: 3, Cluster: "c1", Namespace: "ns1", RunID: "abc123", Token: "tok"}
	rep, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	perName := map[string]int{}
	for _, d := range g.deployments(t) {
		perName[d]++
	}
	want := map[string]int{"storm-abc123-0": 4, "storm-abc123-1": 3, "storm-abc123-2": 3}
	if fmt.Sprint(perName) != fmt.Sprint(want) {
		t.Fatalf("signals per deployment = %v, want %v", perName, want)
	}
	for _, res := range rep.Results {
		if res.Incident != res.Index%3 {
			t.Errorf("signal %d in incident %d, want %d", res.Index, res.Incident, res.Index%3)
		}
	}
	for i, inc := range rep.Incidents {
		name := fmt.Sprintf("storm-abc123-%d", i)
		fp := dedup.Fingerprint(v1alpha1.TargetRef{Cluster: "c1", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns1", Name: name})
		if inc.Target != name || inc.Fingerprint != fp || inc.Sent != want[name] || inc.Counted != want[name] {
			t.Errorf("incident %d = %+v, want target %s fingerprint %s sent/counted %d", i, inc, name, fp, want[name])
		}
		if !slices.Equal(inc.NamesAnswered, []string{"rr-1"}) {
			t.Errorf("incident %d names answered = %v, want [rr-1]", i, inc.NamesAnswered)
		}
	}
	for i := range g.requests() {
		if g.paths[i] != AlertmanagerPath || g.auth[i] != "Bearer tok" || g.ctypes[i] != "application/json" {
			t.Fatalf("request %d: path %q auth %q content type %q", i, g.paths[i], g.auth[i], g.ctypes[i])
		}
	}

	// The webhook as Alertmanager sends it.
	var raw map[string]any
	if err := json.Unmarshal(g.bodies[0], &raw); err != nil {
		t.Fatal(err)
	}
	if raw["version"] != "4" || raw["status"] != "firing" {
		t.Errorf("webhook version %v status %v, want 4 firing", raw["version"], raw["status"])
	}
	alert := raw["alerts"].([]any)[0].(map[string]any)
	labels := alert["labels"].(map[string]any)
	if alert["status"] != "firing" || alert["endsAt"] != "0001-01-01T00:00:00Z" || labels["alertname"] != AlertName ||
		labels["namespace"] != "ns1" || labels["severity"] == nil || alert["fingerprint"] == "" {
		t.Errorf("alert = %v", alert)
	}
	if _, err := time.Parse(time.RFC3339, alert["startsAt"].(string)); err != nil {
		t.Errorf("startsAt %v: %v", alert["startsAt"], err)
	}
}

func TestEventPayload(t *testing.T) {
	g := newFakeGateway(t, nil)
	rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 2, Payload: PayloadEvent, Namespace: "ns2", RunID: "ev1"})
	if err != nil || rep.Acknowledged != 2 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	for i, body := range g.bodies {
		var ev corev1.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Fatal(err)
		}
		want := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns2", Name: "storm-ev1-0"}
		if g.paths[i] != KubernetesEventPath || ev.Type != corev1.EventTypeWarning || ev.Reason == "" || ev.InvolvedObject != want {
			t.Errorf("request %d to %s: type %q reason %q involved %+v", i, g.paths[i], ev.Type, ev.Reason, ev.InvolvedObject)
		}
	}
}

func TestRunIDsAreUniqueAndInTargetNames(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewRunID()
		if !runIDPattern.MatchString(id) {
			t.Fatalf("NewRunID() = %q, not a valid run id", id)
		}
		if seen[id] {
			t.Fatalf("NewRunID() repeated %q", id)
		}
		seen[id] = true
	}
	g := newFakeGateway(t, nil)
	var ids []string
	for range 2 {
		rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 1})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if rep.Incidents[0].Target != "storm-"+rep.RunID+"-0" {
			t.Errorf("target %q does not carry run id %q", rep.Incidents[0].Target, rep.RunID)
		}
		ids = append(ids, rep.RunID)
	}
	if ids[0] == ids[1] {
		t.Errorf("two runs got the same run id %q", ids[0])
	}
	if d := g.deployments(t); d[0] == d[1] {
		t.Errorf("two runs named the same deployment %q", d[0])
	}
}

func TestConfigValidation(t *testing.T) {
	ok := []string{"http://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no targets", Config{}, []string{"no targets"}},
		{"bad scheme", Config{Targets: []string{"ftp://x"}}, []string{"scheme"}},
		{"no host", Config{Targets: []string{"http://"}}, []string{"no host"}},
		{"query", Config{Targets: []string{"http://x/?a=b"}}, []string{"query"}},
		{"fingerprints above signals", Config{Targets: ok, Signals: 2, Fingerprints: 3}, []string{"fingerprints 3"}},
		{"negative", Config{Targets: ok, Signals: -1, Concurrency: -1, MaxRetries: -1, MaxRetryAfter: -time.Second}, []string{"signals -1", "concurrency -1", "max retries -1", "max retry-after -1s"}},
		{"payload", Config{Targets: ok, Payload: "sms"}, []string{`payload "sms"`}},
		{"run id", Config{Targets: ok, RunID: "Has_Upper"}, []string{"run id"}},
		{"kube without namespace", Config{Targets: ok, Kube: &rest.Config{Host: "https://x"}}, []string{"namespace"}},
		{"periods", Config{Targets: ok, RetryBasePeriod: time.Second, RetryMaxPeriod: time.Millisecond}, []string{"retry max period"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(testContext(t), tc.cfg)
			if !errors.Is(err, ErrInvalidConfig) || rep != nil {
				t.Fatalf("Run = %v, %v; want no report and ErrInvalidConfig", rep, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	c, err := Config{Targets: []string{"http://x/"}, Signals: 500}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != DefaultMaxConcurrency || c.Fingerprints != 1 || c.Payload != PayloadAlert || c.Cluster != "local" ||
		c.Namespace != "storm" || c.MaxRetries != 20 || c.Targets[0] != "http://x" || c.RunID == "" {
		t.Errorf("defaults = %+v", c)
	}
	if c, _ := (Config{Targets: ok, Signals: 7}).resolve(); c.Concurrency != 7 {
		t.Errorf("concurrency for 7 signals = %d, want 7 (all at once)", c.Concurrency)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 100, 7 * time.Millisecond},
		{ms(10, 20, 30, 40), 50, 20 * time.Millisecond},
		{ms(10, 20, 30, 40), 51, 30 * time.Millisecond},
		{ms(10, 20, 30, 40), 95, 40 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 95, 95 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(hundred...), 0.1, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tc.in), tc.p, got, tc.want)
		}
	}

	// Unsorted input to summarize, milliseconds with one decimal.
	s := summarize([]time.Duration{1250 * time.Microsecond, 40 * time.Microsecond, 3040 * time.Microsecond, 2 * time.Millisecond})
	if s != (LatencySummary{Count: 4, P50Ms: 1.3, P95Ms: 3.0, P99Ms: 3.0, MaxMs: 3.0}) {
		t.Errorf("summarize = %+v", s)
	}
}

func TestProgressPlainLines(t *testing.T) {
	g := newFakeGateway(t, nil)
	var out bytes.Buffer
	if _, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 25, Concurrency: 4, Progress: &out}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 10 || strings.Contains(out.String(), "\r") {
		t.Fatalf("progress = %q, want 10 plain lines", out.String())
	}
	if !strings.Contains(lines[9], "25/25 100%") || !strings.HasPrefix(lines[0], "[===") || !strings.Contains(lines[0], "3/25") {
		t.Errorf("first/last line = %q / %q", lines[0], lines[9])
	}
}

func TestReportJSONShape(t *testing.T) {
	g := newFakeGateway(t, nil)
	rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 2})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	rep.Rate = 5
	rep.Verification = &Verification{Namespace: "ns"}
	rep.APIRequests = &APIRequests{ByResourceVerb: []APIRequestCount{{Resource: "leases", Verb: "PUT"}}}
	rep.Incidents[0].Found = &IncidentRRs{}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	keysOf := func(v any) []string {
		var ks []string
		for k := range v.(map[string]any) {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	for _, tc := range []struct {
		what string
		v    any
		want []string
	}{
		{"report", m, []string{"acknowledged", "apiRequests", "attempts", "cluster", "concurrency", "counted", "durationSeconds", "failed",
			"fingerprints", "incidents", "latency", "maxAttempts", "otherFingerprints", "outcomes", "payload", "perTarget", "rate", "results", "retriedSignals",
			"retries", "retriesByCause", "runID", "signalNamespace", "signals", "startedAt", "targets", "throughputPerSecond", "verification"}},
		{"latency", m["latency"], []string{"count", "maxMs", "p50Ms", "p95Ms", "p99Ms"}},
		{"incident", m["incidents"].([]any)[0], []string{"acknowledged", "attempts", "counted", "fingerprint", "found", "index", "namesAnswered", "otherFingerprints", "sent", "target"}},
		{"found", m["incidents"].([]any)[0].(map[string]any)["found"], []string{"boundsHeld", "countExact", "duplicates", "names", "occurrenceCount", "rrs", "successive", "terminal"}},
		{"result", m["results"].([]any)[0], []string{"attempts", "code", "incident", "index", "latencyMs", "outcome", "remediationRequest", "target"}},
		{"perTarget", m["perTarget"].([]any)[0], []string{"attempts", "final", "url"}},
		{"verification", m["verification"], []string{"boundsHeld", "countsExact", "duplicates", "missing", "namespace", "rrsExpected", "rrsFound", "successive"}},
		{"apiRequests", m["apiRequests"], []string{"byResourceVerb", "idleCorrection", "idleSeconds", "perSignal", "runSeconds", "subtracted", "total"}},
		{"apiRequest row", m["apiRequests"].(map[string]any)["byResourceVerb"].([]any)[0], []string{"idleSubtracted", "perSignal", "raw", "requests", "resource", "verb"}},
	} {
		if got := keysOf(tc.v); !slices.Equal(got, tc.want) {
			t.Errorf("%s keys = %v, want %v", tc.what, got, tc.want)
		}
	}
	if m["outcomes"].(map[string]any)["201"] != 2.0 {
		t.Errorf("outcomes = %v, want 201:2", m["outcomes"])
	}
}

func TestCheckAndText(t *testing.T) {
	rep := &Report{
		RunID: "r1", Signals: 4, Acknowledged: 3, Failed: 1, Payload: PayloadAlert, Outcomes: map[string]int{"201": 1, "202": 2, OutcomeError: 1},
		Targets:   []string{"http://a", "http://b"},
		PerTarget: []TargetSummary{{URL: "http://a", Attempts: 3, Final: map[string]int{"201": 1}}, {URL: "http://b", Attempts: 2, Final: map[string]int{"202": 2}}},
		Incidents: []Incident{
			{Index: 0, Target: "storm-r1-0", Sent: 2, Attempts: 2, Acknowledged: 2, Counted: 2, Found: &IncidentRRs{RRs: 1, OccurrenceCount: 2, CountExact: true, BoundsHeld: true, Names: []string{"a"}}},
			{Index: 1, Target: "storm-r1-1", Sent: 2, Attempts: 3, Acknowledged: 1, Counted: 1, Found: &IncidentRRs{RRs: 2, OccurrenceCount: 3, BoundsHeld: true, Names: []string{"b", "c"}}},
		},
		Verification: &Verification{Namespace: "ns", RRsExpected: 2, RRsFound: 3, Duplicates: 1, BoundsHeld: true},
		APIRequests:  &APIRequests{Subtracted: "x", ByResourceVerb: []APIRequestCount{{Resource: "remediationrequests", Verb: "POST", Requests: 2}}, Total: 2},
	}
	err := rep.Check(true)
	for _, want := range []error{ErrUnacknowledged, ErrDuplicates, ErrCountsNotExact} {
		if !errors.Is(err, want) {
			t.Errorf("Check(true) = %v, want it to match %v", err, want)
		}
	}
	if err := rep.Check(false); errors.Is(err, ErrCountsNotExact) {
		t.Errorf("Check(false) = %v, must not complain about counts", err)
	}
	if err := (&Report{Verification: &Verification{Error: "forbidden"}}).Check(true); !errors.Is(err, ErrNotVerified) {
		t.Errorf("Check with failed verification = %v, want ErrNotVerified", err)
	}
	if err := (&Report{Signals: 1, Acknowledged: 1, Verification: &Verification{CountsExact: true}}).Check(true); err != nil {
		t.Errorf("Check of a clean report = %v", err)
	}

	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{"duplicates 1", "counts exact: NO", "storm-r1-1", "remediationrequests", "http://b", "error"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	// The failing incident comes first.
	if strings.Index(text, "storm-r1-1") > strings.Index(text, "storm-r1-0") {
		t.Errorf("incident 1 (failing) should be listed before incident 0:\n%s", text)
	}
}

// TestOtherFingerprints: a gateway whose cluster name differs from the
// storm's computes other fingerprints; the report says so.
func TestOtherFingerprints(t *testing.T) {
	g := newFakeGateway(t, func(_ int, _ *http.Request, body []byte) reply {
		var msg webhookMessage
		_ = json.Unmarshal(body, &msg)
		l := msg.Alerts[0].Labels
		fp := dedup.Fingerprint(v1alpha1.TargetRef{Cluster: "gw-cluster", APIVersion: "apps/v1", Kind: "Deployment", Namespace: l["namespace"], Name: l["deployment"]})
		return reply{code: http.StatusAccepted, body: fmt.Sprintf(`{"outcome":"duplicate","remediationRequest":"rr-1","fingerprint":%q}`, fp)}
	})
	for cluster, want := range map[string]int{"gw-cluster": 0, "local": 4} {
		rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 4, Fingerprints: 2, Cluster: cluster})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if rep.OtherFingerprints != want || rep.Incidents[0].OtherFingerprints != want/2 {
			t.Errorf("cluster %s: other fingerprints %d (incident 0: %d), want %d", cluster, rep.OtherFingerprints, rep.Incidents[0].OtherFingerprints, want)
		}
		var b strings.Builder
		_ = rep.WriteText(&b)
		if got := strings.Contains(b.String(), "does --cluster (local) match"); got != (want > 0) {
			t.Errorf("cluster %s: warning shown = %v:\n%s", cluster, got, b.String())
		}
	}
}
