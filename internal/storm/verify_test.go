package storm

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
)

const metricsPage = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="leasehold.dev",resource="remediationrequests",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="leasehold.dev",resource="remediationrequests",scope="resource",subresource="",verb="POST",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="leasehold.dev",resource="remediationrequests",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 97
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 12
# HELP apiserver_request_total_other not ours
# TYPE apiserver_request_total_other counter
apiserver_request_total_other{resource="leases",verb="PUT"} 1000
# HELP apiserver_request_duration_seconds [STABLE] Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{resource="leases",verb="PUT",le="0.005"} 30
apiserver_request_duration_seconds_bucket{resource="leases",verb="PUT",le="+Inf"} 40
apiserver_request_duration_seconds_sum{resource="leases",verb="PUT"} 0.1
apiserver_request_duration_seconds_count{resource="leases",verb="PUT"} 40
`

func TestParseRequestCounts(t *testing.T) {
	got, err := ParseRequestCounts(strings.NewReader(metricsPage))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := RequestCounts{
		{Resource: "remediationrequests", Verb: "POST"}:       5,
		{Resource: "remediationrequests/status", Verb: "PUT"}: 97,
		{Resource: "leases", Verb: "PUT"}:                     40,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}

	if got, err := ParseRequestCounts(strings.NewReader("# nothing here\nup 1\n")); err != nil || len(got) != 0 {
		t.Errorf("page without the family = %v, %v; want empty, nil", got, err)
	}
	if _, err := ParseRequestCounts(strings.NewReader(`apiserver_request_total{resource="x" 1` + "\n")); err == nil {
		t.Error("malformed sample parsed without error")
	}
}

func TestAccountRequests(t *testing.T) {
	post := ResourceVerb{"remediationrequests", "POST"}
	put := ResourceVerb{"remediationrequests/status", "PUT"}
	lease := ResourceVerb{"leases", "PUT"}
	list := ResourceVerb{"leases", "LIST"}
	a := RequestCounts{post: 10, put: 100, lease: 1000, list: 50}
	b := RequestCounts{post: 13, put: 197, lease: 1040, list: 52}
	// Idle: no RR writes, leases renewed at the same rate, and a reset
	// counter for LIST (the API server restarted).
	c := RequestCounts{post: 13, put: 197, lease: 1060, list: 1}

	rep := accountRequests(a, b, c, 4*time.Second, 2*time.Second, 100)
	rows := map[ResourceVerb]APIRequestCount{}
	for _, r := range rep.ByResourceVerb {
		rows[ResourceVerb{r.Resource, r.Verb}] = r
	}
	check := func(k ResourceVerb, raw, idle, requests float64) {
		t.Helper()
		r := rows[k]
		if r.Raw != raw || math.Abs(r.IdleSubtracted-idle) > 1e-9 || math.Abs(r.Requests-requests) > 1e-9 || math.Abs(r.PerSignal-requests/100) > 1e-12 {
			t.Errorf("%v = %+v, want raw %v idle %v requests %v", k, r, raw, idle, requests)
		}
	}
	check(post, 3, 0, 3)
	check(put, 97, 0, 97)
	// 40 during the run minus 20 in half the time, scaled x2: 0.
	check(lease, 40, 40, 0)
	// 2 during the run; the reset counter's idle delta is its new value,
	// 1, scaled x2, and the difference is floored at 0.
	check(list, 2, 2, 0)
	if !rep.IdleCorrection || rep.IdleSeconds != 2 || rep.RunSeconds != 4 || rep.Total != 100 || rep.PerSignal != 1 {
		t.Errorf("summary = %+v", rep)
	}
	if !strings.Contains(rep.Subtracted, "2.0s idle") || !strings.Contains(rep.Subtracted, "x 2") {
		t.Errorf("subtracted = %q, want it to say what was subtracted", rep.Subtracted)
	}
	if rep.ByResourceVerb[0].Resource != "remediationrequests/status" || rep.ByResourceVerb[1] != rows[post] {
		t.Errorf("rows not sorted by requests: %+v", rep.ByResourceVerb)
	}

	raw := accountRequests(a, b, nil, 4*time.Second, 0, 100)
	if raw.IdleCorrection || raw.Total != 3+97+40+2 || !strings.HasPrefix(raw.Subtracted, "nothing") {
		t.Errorf("without correction = %+v", raw)
	}

	if got := idleInterval(50*time.Millisecond, time.Second, 10*time.Second); got != time.Second {
		t.Errorf("idle for a short run = %v, want the 1s floor", got)
	}
	if got := idleInterval(time.Minute, time.Second, 10*time.Second); got != 10*time.Second {
		t.Errorf("idle for a long run = %v, want the 10s cap", got)
	}
	if got := idleInterval(3*time.Second, time.Second, 10*time.Second); got != 3*time.Second {
		t.Errorf("idle for a 3s run = %v, want 3s", got)
	}
}

// rrFor is the part of a RemediationRequest verify reads: the fingerprint
// label and spec field, the phase and the occurrence count (0: no
// deduplication status).
func rrFor(name string, fingerprint string, count int64, phase v1alpha1.RemediationPhase) v1alpha1.RemediationRequest {
	rr := v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fingerprint)}},
		Spec:       v1alpha1.RemediationRequestSpec{Fingerprint: fingerprint},
		Status:     v1alpha1.RemediationRequestStatus{Phase: phase},
	}
	if count > 0 {
		rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: count}
	}
	return rr
}

func TestVerify(t *testing.T) {
	fp := func(i int) string { return fmt.Sprintf("%064x", i+1) }
	incs := []Incident{
		{Index: 0, Fingerprint: fp(0), Sent: 5, Attempts: 7, Counted: 5},
		{Index: 1, Fingerprint: fp(1), Sent: 5, Attempts: 5, Counted: 5},
		{Index: 2, Fingerprint: fp(2), Sent: 5, Attempts: 6, Counted: 4},
		{Index: 3, Fingerprint: fp(3), Sent: 5, Attempts: 5, Counted: 5},
		{Index: 4, Fingerprint: fp(4), Sent: 1, Attempts: 1, Counted: 1},
	}
	// Same label prefix as incident 0, another fingerprint: not incident 0's.
	impostor := fp(0)[:40] + strings.Repeat("f", 24)
	rrs := []v1alpha1.RemediationRequest{
		rrFor("a", fp(0), 5, ""),
		rrFor("b2", fp(1), 3, ""),
		rrFor("b1", fp(1), 2, ""),
		rrFor("c", fp(2), 6, ""), // 4 counted <= 6 <= 6 attempts: bounds hold, not exact
		rrFor("x", impostor, 99, ""),
		rrFor("y", fmt.Sprintf("%064x", 999), 1, ""), // another run's
		rrFor("e", fp(4), 0, ""),                     // no deduplication status: counts 1
	}
	v := verify("ns", incs, rrs)
	want := Verification{Namespace: "ns", RRsExpected: 5, RRsFound: 5, Duplicates: 1, Missing: 1, CountsExact: false, BoundsHeld: false}
	if *v != want {
		t.Errorf("verification = %+v, want %+v", *v, want)
	}
	wantFound := []IncidentRRs{
		{RRs: 1, Names: []string{"a"}, OccurrenceCount: 5, CountExact: true, BoundsHeld: true},
		{RRs: 2, Duplicates: 1, Names: []string{"b1", "b2"}, OccurrenceCount: 5, CountExact: true, BoundsHeld: true},
		{RRs: 1, Names: []string{"c"}, OccurrenceCount: 6, CountExact: false, BoundsHeld: true},
		{RRs: 0, Names: []string{}, OccurrenceCount: 0, CountExact: false, BoundsHeld: false},
		{RRs: 1, Names: []string{"e"}, OccurrenceCount: 1, CountExact: true, BoundsHeld: true},
	}
	for i, w := range wantFound {
		if got := incs[i].Found; fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", w) {
			t.Errorf("incident %d found %+v, want %+v", i, *got, w)
		}
	}

	// A count above the attempts breaks the upper bound.
	over := []Incident{{Fingerprint: fp(0), Sent: 2, Attempts: 2, Counted: 2}}
	if v := verify("ns", over, []v1alpha1.RemediationRequest{rrFor("a", fp(0), 3, "")}); v.BoundsHeld || v.CountsExact || v.Duplicates != 0 {
		t.Errorf("over-count verification = %+v, want bounds and exactness broken", *v)
	}
}

// fakeAPIServer serves what Run needs from an API server: /metrics with
// scripted counters, and the RemediationRequest list.
type fakeAPIServer struct {
	srv     *httptest.Server
	pages   []string
	rrs     []v1alpha1.RemediationRequest
	listErr int // fail this many lists first

	mu        sync.Mutex
	scrapes   int
	selectors []string
}

func newFakeAPIServer(t *testing.T, pages []string, rrs []v1alpha1.RemediationRequest) *fakeAPIServer {
	f := &fakeAPIServer{pages: pages, rrs: rrs}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/metrics":
		if f.scrapes >= len(f.pages) {
			http.Error(w, "no more pages", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(f.pages[f.scrapes]))
		f.scrapes++
	case r.URL.Path == "/apis/leasehold.dev/v1alpha1/namespaces/rrs/remediationrequests":
		f.selectors = append(f.selectors, r.URL.Query().Get("labelSelector"))
		if f.listErr > 0 {
			f.listErr--
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd hiccup","code":500}`))
			return
		}
		list := v1alpha1.RemediationRequestList{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RemediationRequestList"},
			Items:    f.rrs,
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	default:
		http.NotFound(w, r)
	}
}

func counterPage(post, lease float64) string {
	return fmt.Sprintf(`# TYPE apiserver_request_total counter
apiserver_request_total{resource="remediationrequests",subresource="",verb="POST"} %v
apiserver_request_total{resource="leases",subresource="",verb="PUT"} %v
`, post, lease)
}

// TestRunWithKube drives a whole Run with verification and accounting
// against fakes: the gateway moves the fake clock 2s per request, so the
// run lasts 2s and the idle interval is 2s, stepped by the test.
func TestRunWithKube(t *testing.T) {
	fc := clocktesting.NewFakeClock(fakeStart)
	g := newFakeGateway(t, func(int, *http.Request, []byte) reply {
		fc.Step(2 * time.Second)
		return reply{code: http.StatusCreated, body: `{"name":"rr-0"}`}
	})
	fp := dedup.Fingerprint(TargetOf(DefaultCluster, DefaultNamespace, "kube1", 0))
	api := newFakeAPIServer(t,
		[]string{counterPage(10, 100), counterPage(11, 110), counterPage(11, 120)},
		[]v1alpha1.RemediationRequest{rrFor("rr-0", fp, 1, "")})
	api.listErr = 1

	done := runAsync(testContext(t), Config{
		Targets: []string{g.URL()}, Signals: 1, RunID: "kube1", Clock: fc,
		Kube: &rest.Config{Host: api.srv.URL}, RRNamespace: "rrs",
	})
	waitFor(t, 10*time.Second, "the idle timer", fc.HasWaiters)
	fc.Step(2*time.Second - time.Millisecond)
	if !fc.HasWaiters() {
		t.Fatal("idle interval ended before 2s (the run's duration)")
	}
	fc.Step(time.Millisecond)
	r := <-done
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}

	a := r.rep.APIRequests
	if a == nil || a.Error != "" {
		t.Fatalf("api requests = %+v", a)
	}
	want := []APIRequestCount{
		{Resource: "remediationrequests", Verb: "POST", Raw: 1, IdleSubtracted: 0, Requests: 1, PerSignal: 1},
		{Resource: "leases", Verb: "PUT", Raw: 10, IdleSubtracted: 10, Requests: 0, PerSignal: 0},
	}
	if !slices.Equal(a.ByResourceVerb, want) || a.RunSeconds != 2 || a.IdleSeconds != 2 || a.Total != 1 {
		t.Errorf("api requests = %+v, want rows %+v over 2s run and 2s idle", a, want)
	}

	v := r.rep.Verification
	if v == nil || v.Error != "" || v.RRsFound != 1 || v.Duplicates != 0 || !v.CountsExact || !v.BoundsHeld {
		t.Fatalf("verification = %+v", v)
	}
	wantSel := v1alpha1.LabelFingerprint + " in (" + v1alpha1.FingerprintLabelValue(fp) + ")"
	if len(api.selectors) != 2 || api.selectors[1] != wantSel {
		t.Errorf("list selectors = %q, want two lists (one retried) with %q", api.selectors, wantSel)
	}
	if err := r.rep.Check(true); err != nil {
		t.Errorf("Check = %v", err)
	}
}

func TestRunWithKubeWithoutMetricsAccess(t *testing.T) {
	g := newFakeGateway(t, nil)
	api := newFakeAPIServer(t, nil, nil) // every scrape fails
	rep, err := Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 2, Kube: &rest.Config{Host: api.srv.URL}, RRNamespace: "rrs"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.APIRequests == nil || rep.APIRequests.Error == "" {
		t.Errorf("api requests = %+v, want the scrape error recorded", rep.APIRequests)
	}
	if v := rep.Verification; v == nil || v.Missing != 1 || v.CountsExact {
		t.Errorf("verification = %+v, want the incident missing", v)
	}
	if err := rep.Check(true); !errors.Is(err, ErrCountsNotExact) {
		t.Errorf("Check = %v, want ErrCountsNotExact", err)
	}

	// Both list attempts failing is recorded, and Check reports it.
	api.mu.Lock()
	api.listErr = 2
	api.mu.Unlock()
	rep, err = Run(testContext(t), Config{Targets: []string{g.URL()}, Signals: 1, Kube: &rest.Config{Host: api.srv.URL}, RRNamespace: "rrs", NoAPIMetrics: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.APIRequests != nil || rep.Verification == nil || !strings.Contains(rep.Verification.Error, "etcd hiccup") {
		t.Fatalf("api requests %+v verification %+v", rep.APIRequests, rep.Verification)
	}
	if err := rep.Check(true); !errors.Is(err, ErrNotVerified) {
		t.Errorf("Check = %v, want ErrNotVerified", err)
	}
}

// An RR that finished during the run and the one that followed it are
// successive; two in progress together are duplicates.
func TestVerifySuccessiveRequests(t *testing.T) {
	fp := fmt.Sprintf("%064x", 7)
	inc := []Incident{{Fingerprint: fp, Sent: 6, Attempts: 6, Counted: 6}}
	for _, tc := range []struct {
		name            string
		phases          []v1alpha1.RemediationPhase
		dup, successive int
	}{
		{"one finished, one open", []v1alpha1.RemediationPhase{v1alpha1.PhaseCompleted, ""}, 0, 1},
		{"two finished, one open", []v1alpha1.RemediationPhase{v1alpha1.PhaseCompleted, v1alpha1.PhaseFailed, v1alpha1.PhaseExecuting}, 0, 2},
		{"two open, one finished", []v1alpha1.RemediationPhase{v1alpha1.PhaseCompleted, v1alpha1.PhaseBlocked, ""}, 1, 1},
		{"three open", []v1alpha1.RemediationPhase{"", "", v1alpha1.PhaseExecuting}, 2, 0},
	} {
		var rrs []v1alpha1.RemediationRequest
		for i, ph := range tc.phases {
			rrs = append(rrs, rrFor(fmt.Sprintf("rr-%d", i), fp, 2, ph))
		}
		v := verify("ns", slices.Clone(inc), rrs)
		if v.Duplicates != tc.dup || v.Successive != tc.successive {
			t.Errorf("%s: duplicates %d successive %d, want %d and %d", tc.name, v.Duplicates, v.Successive, tc.dup, tc.successive)
		}
	}
}
