package runner

import (
	"slices"
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

// fixedStart is the start of every fixture report.
var fixedStart = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

// rep builds a verified, measured repetition with latencies.
func rep(n, signals, dups int, exact bool, api float64, seconds float64, latencies ...float64) RepResult {
	r := RepResult{
		Rep: n, Signals: signals, Acknowledged: signals, Verified: true, Duplicates: dups, CountsExact: exact,
		APIMeasured: true, APITotal: api * float64(signals), APIPerSignal: api, DurationSeconds: seconds,
		APIByResourceVerb: []storm.APIRequestCount{
			{Resource: "remediationrequests", Verb: "POST", Requests: api * float64(signals) / 2},
			{Resource: "remediationrequests", Verb: "LIST", Requests: api * float64(signals) / 2},
		},
		latenciesMs: latencies,
	}
	sorted := append([]float64(nil), latencies...)
	slices.Sort(sorted)
	l := latencyOf(sorted)
	r.Latency = storm.LatencySummary{Count: l.Count, P50Ms: l.P50Ms, P95Ms: l.P95Ms, P99Ms: l.P99Ms, MaxMs: l.MaxMs}
	if seconds > 0 {
		r.Throughput = float64(len(latencies)) / seconds
	}
	return r
}

// ramp returns n latencies from lo in steps of step.
func ramp(n int, lo, step float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = lo + float64(i)*step
	}
	return out
}

// storms builds a storm scenario result from repetitions per strategy.
func stormResult(id string, p Params, reps map[Strategy][]RepResult) ScenarioResult {
	sc := ScenarioResult{ID: id, Title: "fixture " + id, Params: p, DurationSeconds: 42}
	for _, s := range []Strategy{Leasehold, Baseline, Floor} {
		if rs, ok := reps[s]; ok {
			sc.Strategies = append(sc.Strategies, StrategyResult{Strategy: s, Summary: summarize(rs), Reps: rs})
		}
	}
	sc.Ratios = ratios(sc.Strategies)
	return sc
}

// fixtureReport is a complete, deterministic report: S1 meets its goals
// but one, S2 misses one, S4 meets both, S5 has two benchmarks, S3 did
// not run.
func fixtureReport() *Report {
	s1 := stormResult("S1", Params{Signals: 10, Fingerprints: 1, Concurrency: 10, Replicas: 3, Reps: 2}, map[Strategy][]RepResult{
		Leasehold: {rep(1, 10, 0, true, 0.2, 0.1, ramp(10, 20, 5)...), rep(2, 10, 0, true, 0.3, 0.1, ramp(10, 22, 5)...)},
		Baseline:  {rep(1, 10, 3, false, 5, 1, ramp(10, 100, 50)...), rep(2, 10, 0, false, 6, 1, ramp(10, 120, 50)...)},
		Floor:     {rep(1, 10, 9, false, 1, 0.05, ramp(10, 5, 1)...), rep(2, 10, 9, false, 1, 0.05, ramp(10, 6, 1)...)},
	})
	s2 := stormResult("S2", Params{Signals: 20, Fingerprints: 20, Concurrency: 5, Replicas: 3, Reps: 1}, map[Strategy][]RepResult{
		Leasehold: {rep(1, 20, 0, true, 3, 1, ramp(20, 30, 2)...)},
		Baseline:  {rep(1, 20, 0, true, 5, 1.5, ramp(20, 50, 3)...)},
		Floor:     {rep(1, 20, 0, true, 1, 0.4, ramp(20, 8, 1)...)},
	})
	s4 := ScenarioResult{ID: "S4", Title: "fixture S4", Params: Params{RRs: 6, Targets: 2, Replicas: 3, ExecutionMs: 200, Reps: 1}, DurationSeconds: 9,
		Orchestration: &OrchestrationResult{
			Strategy: Leasehold, RRs: 6, Completed: 6, Executions: 6, MaxActivePerTarget: 1,
			Handoff:    Latency{Count: 4, P50Ms: 20, P95Ms: 45, P99Ms: 45, MaxMs: 45},
			Latency:    Latency{Count: 6, P50Ms: 400, P95Ms: 700, P99Ms: 700, MaxMs: 700},
			Throughput: 5, DurationSeconds: 1.2, APIMeasured: true, APIPerRR: 12.5,
			APIByResourceVerb: []storm.APIRequestCount{{Resource: "workflowexecutions", Verb: "POST", Requests: 6, PerSignal: 1}},
		},
		Notes: []string{"leasehold only."},
	}
	s5 := ScenarioResult{ID: "S5", Title: "fixture S5", Params: Params{Iterations: 10}, DurationSeconds: 30,
		Locks: []LockBench{
			{Strategy: Leasehold, Name: "uncontended acquire+release", Iterations: 10, P50Ms: 3.2, P95Ms: 5.1, P99Ms: 6, CallsPerOp: 2},
			{Strategy: Leasehold, Name: "local hand-off", Iterations: 10, P50Ms: 2.5, P95Ms: 4, P99Ms: 4.4, CallsPerOp: 1},
		},
	}
	rep := &Report{
		StartedAt: fixedStart, DurationSeconds: 754,
		Machine:   Machine{Cores: 2, MemoryBytes: 8 << 30, CPUModel: "Fixture CPU", OS: "linux", Arch: "amd64", GoVersion: "go1.26"},
		Command:   "go run ./bench/cmd/bench --reps 2",
		Scenarios: []ScenarioResult{s1, s2, s4, s5},
	}
	rep.Goals = evaluateGoals(rep.Scenarios)
	return rep
}
