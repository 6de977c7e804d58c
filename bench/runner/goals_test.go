package runner

import (
	"strings"
	"testing"
)

func TestGoalsOfFixture(t *testing.T) {
	rep := fixtureReport()
	if len(rep.Goals) != len(goals) {
		t.Fatalf("%d goal results for %d goals", len(rep.Goals), len(goals))
	}
	want := []struct {
		scenario string
		status   GoalStatus
		measured string // a part of Measured
	}{
		{"S1", GoalMet, "0 duplicate(s) in 0 of 2 repetitions; counts exact in 2 of 2"},
		{"S1", GoalMet, "0.25 requests per signal"},
		{"S1", GoalMet, "leasehold 0.25, baseline 5.50 requests per signal: 22.0x fewer"},
		// Pooled 20..65 and 22..67 ms: p99 is 67.
		{"S1", GoalMet, "p99 67.0 ms over 20 signals of 2 repetitions (worst single repetition 67.0 ms)"},
		// 3 against 5 is not half.
		{"S2", GoalNotMet, "leasehold 3.00, baseline 5.00 requests per signal: 1.67x fewer"},
		// 20/1 s against 20/1.5 s: 1.5x.
		{"S2", GoalNotMet, "leasehold 20.0, baseline 13.3 signals/s: 1.50x"},
		// 20/s against 50/s: 0.4x.
		{"S2", GoalNotMet, "leasehold 20.0, floor 50.0 signals/s: 0.40x"},
		{"S3", GoalNotMeasured, "scenario not run"},
		{"S3", GoalNotMeasured, "scenario not run"},
		{"S4", GoalMet, "at most 1 active per target over 6 executions"},
		{"S4", GoalMet, "p95 45.0 ms (p50 20.0 ms) over 4 hand-offs"},
	}
	for i, w := range want {
		g := rep.Goals[i]
		if g.Scenario != w.scenario || g.Status != w.status || !strings.Contains(g.Measured, w.measured) {
			t.Errorf("goal %d (%s %q): %s %q, want %s containing %q", i, g.Scenario, g.Goal, g.Status, g.Measured, w.status, w.measured)
		}
	}
}

func TestGoalVerdicts(t *testing.T) {
	storm := func(lh, bl *Summary) *ScenarioResult {
		sc := &ScenarioResult{ID: "S1"}
		if lh != nil {
			sc.Strategies = append(sc.Strategies, StrategyResult{Strategy: Leasehold, Summary: *lh})
		}
		if bl != nil {
			sc.Strategies = append(sc.Strategies, StrategyResult{Strategy: Baseline, Summary: *bl})
		}
		return sc
	}
	exactness, fewer, p99 := goals[0], goals[2], goals[3]
	tests := []struct {
		name string
		g    goal
		sc   *ScenarioResult
		want GoalStatus
	}{
		{"a duplicate in one repetition", exactness, storm(&Summary{Reps: 10, RepsVerified: 10, Duplicates: 1, RepsWithDuplicates: 1, CountsExact: true, RepsCountsExact: 10}, nil), GoalNotMet},
		{"counts off in one repetition", exactness, storm(&Summary{Reps: 10, RepsVerified: 10, RepsCountsExact: 9}, nil), GoalNotMet},
		{"a repetition not verified", exactness, storm(&Summary{Reps: 10, RepsVerified: 9, RepsCountsExact: 9}, nil), GoalNotMeasured},
		{"clean", exactness, storm(&Summary{Reps: 10, RepsVerified: 10, RepsCountsExact: 10, CountsExact: true}, nil), GoalMet},
		{"leasehold did not run", exactness, storm(nil, nil), GoalNotMeasured},
		{"exactly 10x fewer", fewer, storm(&Summary{RepsAPIMeasured: 1, APIPerSignal: 0.5}, &Summary{RepsAPIMeasured: 1, APIPerSignal: 5}), GoalMet},
		{"9x fewer", fewer, storm(&Summary{RepsAPIMeasured: 1, APIPerSignal: 0.5}, &Summary{RepsAPIMeasured: 1, APIPerSignal: 4.5}), GoalNotMet},
		{"baseline not measured", fewer, storm(&Summary{RepsAPIMeasured: 1, APIPerSignal: 0.5}, &Summary{}), GoalNotMeasured},
		{"p99 at the limit", p99, storm(&Summary{Reps: 1, Latency: Latency{Count: 100, P99Ms: 250}}, nil), GoalMet},
		{"p99 over the limit", p99, storm(&Summary{Reps: 1, Latency: Latency{Count: 100, P99Ms: 250.1}}, nil), GoalNotMet},
		{"no latencies", p99, storm(&Summary{Reps: 1}, nil), GoalNotMeasured},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, measured := tc.g.eval(tc.sc)
			if got != tc.want {
				t.Errorf("%s (%s), want %s", got, measured, tc.want)
			}
		})
	}
}

func TestOrchestrationGoals(t *testing.T) {
	never, handoff := goals[9], goals[10]
	tests := []struct {
		name string
		g    goal
		o    *OrchestrationResult
		want GoalStatus
	}{
		{"two active at once", never, &OrchestrationResult{Executions: 10, MaxActivePerTarget: 2}, GoalNotMet},
		{"a watch gap", never, &OrchestrationResult{Executions: 10, MaxActivePerTarget: 1, Gaps: []string{"lost"}}, GoalNotMeasured},
		{"nothing observed", never, &OrchestrationResult{}, GoalNotMeasured},
		{"one at a time", never, &OrchestrationResult{Executions: 10, MaxActivePerTarget: 1}, GoalMet},
		{"p95 200 ms is not under 200 ms", handoff, &OrchestrationResult{Handoff: Latency{Count: 5, P95Ms: 200}}, GoalNotMet},
		{"p95 199.9 ms", handoff, &OrchestrationResult{Handoff: Latency{Count: 5, P95Ms: 199.9}}, GoalMet},
		{"no hand-offs", handoff, &OrchestrationResult{}, GoalNotMeasured},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, measured := tc.g.eval(&ScenarioResult{ID: "S4", Orchestration: tc.o})
			if got != tc.want {
				t.Errorf("%s (%s), want %s", got, measured, tc.want)
			}
		})
	}
}

func TestGoalOfFailedScenarioSaysWhy(t *testing.T) {
	res := evaluateGoals([]ScenarioResult{{ID: "S4", Error: "orchestrator-1 not ready"}})
	for _, g := range res {
		if g.Scenario != "S4" {
			continue
		}
		if g.Status != GoalNotMeasured || !strings.Contains(g.Measured, "orchestrator-1 not ready") {
			t.Errorf("%q: %s %q, want not measured naming the scenario's error", g.Goal, g.Status, g.Measured)
		}
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1234.4: "1234", 99.94: "99.9", 3.14159: "3.14", 0.123: "0.12", 0.0012: "0.0012", -2.5: "-2.50"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
