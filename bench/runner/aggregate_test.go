package runner

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

func TestPercentileNearestRank(t *testing.T) {
	sorted := ramp(100, 1, 1) // 1..100
	for _, tc := range []struct {
		p    float64
		want float64
	}{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {0.1, 1}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	// Same method as storm's, so that pooled and per-repetition figures
	// agree.
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, p := range []float64{50, 95, 99} {
		if got, want := percentile(sorted, p), roundMs(storm.Percentile(ds, p)); got != want {
			t.Errorf("p%v: %v, storm says %v", p, got, want)
		}
	}
}

func TestSummarizePoolsRepetitions(t *testing.T) {
	reps := []RepResult{
		rep(1, 100, 0, true, 0.2, 1, ramp(100, 1, 1)...),    // 1..100 ms
		rep(2, 100, 2, false, 0.4, 3, ramp(100, 101, 1)...), // 101..200 ms
	}
	reps[1].Retries = 7
	s := summarize(reps)

	if s.Reps != 2 || s.Signals != 200 || s.Acknowledged != 200 || s.Retries != 7 {
		t.Errorf("counts: %+v", s)
	}
	if s.Duplicates != 2 || s.RepsWithDuplicates != 1 || s.MaxDuplicates != 2 {
		t.Errorf("duplicates %d in %d reps (max %d), want 2 in 1 (max 2)", s.Duplicates, s.RepsWithDuplicates, s.MaxDuplicates)
	}
	if s.CountsExact || s.RepsCountsExact != 1 || s.RepsVerified != 2 {
		t.Errorf("counts exact %v (%d of %d verified), want false (1 of 2)", s.CountsExact, s.RepsCountsExact, s.RepsVerified)
	}
	// Ratio of sums: (20 + 40) / 200.
	if s.APIPerSignal != 0.3 {
		t.Errorf("API per signal %v, want 0.3", s.APIPerSignal)
	}
	wantRates := []ResourceRate{
		{Resource: "remediationrequests", Verb: "LIST", PerSignal: 0.15},
		{Resource: "remediationrequests", Verb: "POST", PerSignal: 0.15},
	}
	if !reflect.DeepEqual(s.APIByResourceVerb, wantRates) {
		t.Errorf("by resource and verb %+v, want %+v", s.APIByResourceVerb, wantRates)
	}
	// Pooled 1..200 ms.
	if want := (Latency{Count: 200, P50Ms: 100, P95Ms: 190, P99Ms: 198, MaxMs: 200}); s.Latency != want {
		t.Errorf("latency %+v, want %+v", s.Latency, want)
	}
	if s.WorstRepP99Ms != 199 {
		t.Errorf("worst rep p99 %v, want 199", s.WorstRepP99Ms)
	}
	// 200 answered signals over 4 seconds, not the mean of 100 and 33.3.
	if s.Throughput != 50 {
		t.Errorf("throughput %v, want 50", s.Throughput)
	}
	if len(s.LatenciesMs) != 200 || s.LatenciesMs[0] != 1 || s.LatenciesMs[199] != 200 {
		t.Errorf("pooled latencies not sorted 1..200: len %d", len(s.LatenciesMs))
	}
}

func TestSummarizeUnverifiedIsNotExact(t *testing.T) {
	a := rep(1, 10, 0, true, 0.1, 1, 5)
	b := RepResult{Rep: 2, Signals: 10, Error: "verification: boom"}
	s := summarize([]RepResult{a, b})
	if s.CountsExact {
		t.Error("counts exact with a repetition that could not be verified")
	}
	if s.RepsVerified != 1 || s.RepsAPIMeasured != 1 {
		t.Errorf("verified %d, measured %d; want 1 and 1", s.RepsVerified, s.RepsAPIMeasured)
	}
	// Only the measured repetition's signals divide its requests.
	if s.APIPerSignal != 0.1 {
		t.Errorf("API per signal %v, want 0.1", s.APIPerSignal)
	}
}

func TestRepFromStorm(t *testing.T) {
	r := &storm.Report{
		RunID: "abc123", Signals: 3, Acknowledged: 2, Failed: 1, Retries: 4, DurationSeconds: 0.5, Throughput: 4,
		Outcomes:  map[string]int{"201": 1, "202": 1, "503": 1},
		Incidents: make([]storm.Incident, 1),
		Latency:   storm.LatencySummary{Count: 2, P99Ms: 30},
		Results: []storm.SignalResult{
			{Code: 201, Outcome: "201", LatencyMs: 10},
			{Code: 202, Outcome: "202", LatencyMs: 30},
			{Code: 0, Outcome: storm.OutcomeError, LatencyMs: 99},
		},
		Verification: &storm.Verification{Duplicates: 1, RRsFound: 2, CountsExact: false},
		APIRequests:  &storm.APIRequests{Total: 6, PerSignal: 2, ByResourceVerb: []storm.APIRequestCount{{Resource: "leases", Verb: "POST", Requests: 6}}},
	}
	got := repFromStorm(3, r, nil)
	if got.Rep != 3 || got.RunID != "abc123" || got.Failed != 1 || got.Retries != 4 || got.Incidents != 1 {
		t.Errorf("identity and counts: %+v", got)
	}
	if !got.Verified || got.Duplicates != 1 || got.RRsFound != 2 || got.CountsExact {
		t.Errorf("verification: %+v", got)
	}
	if !got.APIMeasured || got.APITotal != 6 || got.APIPerSignal != 2 || len(got.APIByResourceVerb) != 1 {
		t.Errorf("API: %+v", got)
	}
	// The signal without an answer has no latency.
	if !reflect.DeepEqual(got.latenciesMs, []float64{10, 30}) {
		t.Errorf("latencies %v, want [10 30]", got.latenciesMs)
	}

	r.Verification = &storm.Verification{Error: "list failed"}
	r.APIRequests = &storm.APIRequests{Error: "forbidden"}
	got = repFromStorm(1, r, nil)
	if got.Verified || got.APIMeasured || got.Error != "verification: list failed; api requests: forbidden" {
		t.Errorf("failed verification and accounting: verified %v, measured %v, error %q", got.Verified, got.APIMeasured, got.Error)
	}

	got = repFromStorm(2, nil, errors.New("storm: bad config"))
	if got.Error != "storm: bad config" || got.Verified || got.APIMeasured {
		t.Errorf("no report: %+v", got)
	}
}

func TestRatios(t *testing.T) {
	results := []StrategyResult{
		{Strategy: Leasehold, Summary: Summary{RepsAPIMeasured: 1, APIPerSignal: 0.5, Throughput: 300, Latency: Latency{Count: 1, P50Ms: 10, P95Ms: 20, P99Ms: 40}}},
		{Strategy: Baseline, Summary: Summary{RepsAPIMeasured: 1, APIPerSignal: 5, Throughput: 100, Latency: Latency{Count: 1, P50Ms: 20, P95Ms: 80, P99Ms: 400}}},
		{Strategy: Floor, Summary: Summary{RepsAPIMeasured: 0, Throughput: 600, Latency: Latency{Count: 1, P50Ms: 5, P95Ms: 10, P99Ms: 0}}},
	}
	rs := ratios(results)
	if len(rs) != 2 || rs[0].Name != "leasehold/baseline" || rs[1].Name != "leasehold/floor" {
		t.Fatalf("ratios %+v", rs)
	}
	b := rs[0]
	for name, tc := range map[string]struct {
		got  *float64
		want float64
	}{"api": {b.APIPerSignal, 0.1}, "throughput": {b.Throughput, 3}, "p50": {b.P50, 0.5}, "p95": {b.P95, 0.25}, "p99": {b.P99, 0.1}} {
		if tc.got == nil || *tc.got != tc.want {
			t.Errorf("leasehold/baseline %s = %v, want %v", name, tc.got, tc.want)
		}
	}
	f := rs[1]
	if f.APIPerSignal != nil {
		t.Errorf("ratio to an unmeasured API count: %v, want none", *f.APIPerSignal)
	}
	if f.P99 != nil {
		t.Errorf("ratio to a zero p99: %v, want none", *f.P99)
	}
	if f.Throughput == nil || *f.Throughput != 0.5 {
		t.Errorf("leasehold/floor throughput %v, want 0.5", f.Throughput)
	}
	if got := ratios(results[1:]); got != nil {
		t.Errorf("ratios without leasehold: %+v, want none", got)
	}
}

func TestAccountRequestsSubtractsIdleRate(t *testing.T) {
	k := func(r, v string) storm.ResourceVerb { return storm.ResourceVerb{Resource: r, Verb: v} }
	a := storm.RequestCounts{k("leases", "PUT"): 100, k("workflowexecutions", "POST"): 0}
	b := storm.RequestCounts{k("leases", "PUT"): 140, k("workflowexecutions", "POST"): 10, k("remediationrequests", "GET"): 5}
	c := storm.RequestCounts{k("leases", "PUT"): 160, k("workflowexecutions", "POST"): 10, k("remediationrequests", "GET"): 5}
	// Run 2s, idle 4s: the idle increase of 20 lease PUTs scales to 10.
	rows, total := accountRequests(a, b, c, 2*time.Second, 4*time.Second, 10)
	want := []storm.APIRequestCount{
		{Resource: "leases", Verb: "PUT", Raw: 40, IdleSubtracted: 10, Requests: 30, PerSignal: 3},
		{Resource: "workflowexecutions", Verb: "POST", Raw: 10, Requests: 10, PerSignal: 1},
		{Resource: "remediationrequests", Verb: "GET", Raw: 5, Requests: 5, PerSignal: 0.5},
	}
	if !reflect.DeepEqual(rows, want) || total != 45 {
		t.Errorf("rows %+v total %v, want %+v total 45", rows, total, want)
	}

	merged, per := mergeRows(append(rows, rows...), 20)
	if per != 4.5 || len(merged) != 3 || merged[0].Requests != 60 || merged[0].PerSignal != 3 {
		t.Errorf("merged %+v per %v, want leases PUT 60 (3 per unit) first, 4.5 per unit", merged, per)
	}
}

func TestCounterDeltaAfterReset(t *testing.T) {
	if got := counterDelta(100, 30); got != 30 {
		t.Errorf("reset counter delta %v, want 30", got)
	}
	if got := counterDelta(30, 100); got != 70 {
		t.Errorf("delta %v, want 70", got)
	}
}
