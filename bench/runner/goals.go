package runner

import (
	"fmt"
	"strconv"
)

// goal is one of the goals and how to judge it from a report.
type goal struct {
	scenario string
	text     string
	// eval returns the verdict and the number it rests on. It is called
	// only when the scenario ran.
	eval func(sc *ScenarioResult) (GoalStatus, string)
}

// goals are the goals, in its order. A goal is met only by a
// number that meets it: a figure that could not be measured is "not
// measured", never "met".
var goals = []goal{
	{"S1", "zero duplicates and exact counts for leasehold in every repetition", func(sc *ScenarioResult) (GoalStatus, string) {
		lh := sc.strategy(Leasehold)
		if lh == nil || lh.Summary.Reps == 0 {
			return GoalNotMeasured, "leasehold did not run"
		}
		s := lh.Summary
		msg := fmt.Sprintf("%d duplicate(s) in %d of %d repetitions; counts exact in %d of %d",
			s.Duplicates, s.RepsWithDuplicates, s.Reps, s.RepsCountsExact, s.Reps)
		if s.RepsVerified < s.Reps {
			return GoalNotMeasured, fmt.Sprintf("%s (only %d of %d repetitions could be verified)", msg, s.RepsVerified, s.Reps)
		}
		return verdict(s.Duplicates == 0 && s.CountsExact), msg
	}},
	{"S1", "API requests per signal at most 0.5", func(sc *ScenarioResult) (GoalStatus, string) {
		lh := sc.strategy(Leasehold)
		if lh == nil || lh.Summary.RepsAPIMeasured == 0 {
			return GoalNotMeasured, "no API accounting for leasehold"
		}
		v := lh.Summary.APIPerSignal
		return verdict(v <= 0.5), fmt.Sprintf("%s requests per signal", num(v))
	}},
	{"S1", "at least 10x fewer API requests per signal than the baseline", func(sc *ScenarioResult) (GoalStatus, string) {
		return fewerRequests(sc, 10)
	}},
	{"S1", "p99 latency at most 250 ms", func(sc *ScenarioResult) (GoalStatus, string) {
		lh := sc.strategy(Leasehold)
		if lh == nil || lh.Summary.Latency.Count == 0 {
			return GoalNotMeasured, "no leasehold latencies"
		}
		s := lh.Summary
		return verdict(s.Latency.P99Ms <= 250), fmt.Sprintf("p99 %s ms over %d signals of %d repetitions (worst single repetition %s ms)",
			num(s.Latency.P99Ms), s.Latency.Count, s.Reps, num(s.WorstRepP99Ms))
	}},
	{"S2", "at most half the baseline's API requests per signal", func(sc *ScenarioResult) (GoalStatus, string) {
		return fewerRequests(sc, 2)
	}},
	{"S2", "throughput at least 2x the baseline", func(sc *ScenarioResult) (GoalStatus, string) {
		return fasterThan(sc, Baseline, 2)
	}},
	{"S2", "throughput at least half the floor", func(sc *ScenarioResult) (GoalStatus, string) {
		return fasterThan(sc, Floor, 0.5)
	}},
	{"S3", "zero duplicates and exact counts", func(sc *ScenarioResult) (GoalStatus, string) {
		lh := sc.strategy(Leasehold)
		if lh == nil || lh.Summary.Reps == 0 {
			return GoalNotMeasured, "leasehold did not run"
		}
		s := lh.Summary
		msg := fmt.Sprintf("%d duplicate(s); counts exact in %d of %d repetition(s)", s.Duplicates, s.RepsCountsExact, s.Reps)
		if s.RepsVerified < s.Reps {
			return GoalNotMeasured, msg + " (not every repetition could be verified)"
		}
		return verdict(s.Duplicates == 0 && s.CountsExact), msg
	}},
	{"S3", "throughput at least 2x the baseline", func(sc *ScenarioResult) (GoalStatus, string) {
		return fasterThan(sc, Baseline, 2)
	}},
	{"S4", "never two active WorkflowExecutions per target", func(sc *ScenarioResult) (GoalStatus, string) {
		o := sc.Orchestration
		if o == nil || o.Executions == 0 {
			return GoalNotMeasured, "no executions observed"
		}
		msg := fmt.Sprintf("at most %d active per target over %d executions", o.MaxActivePerTarget, o.Executions)
		if len(o.Gaps) > 0 {
			return GoalNotMeasured, msg + "; the watch lost changes"
		}
		return verdict(o.MaxActivePerTarget <= 1), msg
	}},
	{"S4", "hand-off from one execution's completion to the next one's creation: p95 under 200 ms", func(sc *ScenarioResult) (GoalStatus, string) {
		o := sc.Orchestration
		if o == nil || o.Handoff.Count == 0 {
			return GoalNotMeasured, "no hand-offs observed"
		}
		return verdict(o.Handoff.P95Ms < 200), fmt.Sprintf("p95 %s ms (p50 %s ms) over %d hand-offs",
			num(o.Handoff.P95Ms), num(o.Handoff.P50Ms), o.Handoff.Count)
	}},
}

// fewerRequests judges "at least factor x fewer API requests per signal
// than the baseline".
func fewerRequests(sc *ScenarioResult, factor float64) (GoalStatus, string) {
	lh, bl := sc.strategy(Leasehold), sc.strategy(Baseline)
	if lh == nil || bl == nil || lh.Summary.RepsAPIMeasured == 0 || bl.Summary.RepsAPIMeasured == 0 {
		return GoalNotMeasured, "API requests not measured for both leasehold and the baseline"
	}
	l, b := lh.Summary.APIPerSignal, bl.Summary.APIPerSignal
	if l == 0 {
		return verdict(b > 0), fmt.Sprintf("leasehold 0, baseline %s requests per signal", num(b))
	}
	return verdict(b >= factor*l), fmt.Sprintf("leasehold %s, baseline %s requests per signal: %sx fewer",
		num(l), num(b), num(b/l))
}

// fasterThan judges "throughput at least factor x other's".
func fasterThan(sc *ScenarioResult, other Strategy, factor float64) (GoalStatus, string) {
	lh, o := sc.strategy(Leasehold), sc.strategy(other)
	if lh == nil || o == nil || o.Summary.Throughput == 0 {
		return GoalNotMeasured, fmt.Sprintf("throughput not measured for both leasehold and %s", other)
	}
	l, b := lh.Summary.Throughput, o.Summary.Throughput
	return verdict(l >= factor*b), fmt.Sprintf("leasehold %s, %s %s signals/s: %sx",
		num(l), other, num(b), num(l/b))
}

func verdict(ok bool) GoalStatus {
	if ok {
		return GoalMet
	}
	return GoalNotMet
}

// evaluateGoals judges every goal against the scenarios that ran; a goal
// of a scenario that did not run is reported as not measured.
func evaluateGoals(scenarios []ScenarioResult) []GoalResult {
	out := make([]GoalResult, 0, len(goals))
	for _, g := range goals {
		r := GoalResult{Scenario: g.scenario, Goal: g.text, Status: GoalNotMeasured, Measured: "scenario not run"}
		for i := range scenarios {
			if scenarios[i].ID == g.scenario {
				r.Status, r.Measured = g.eval(&scenarios[i])
				if scenarios[i].Error != "" && r.Status == GoalNotMeasured {
					r.Measured += "; scenario error: " + scenarios[i].Error
				}
				break
			}
		}
		out = append(out, r)
	}
	return out
}

// num formats a figure with about three significant digits, without
// exponent: enough to compare, few enough to read.
func num(v float64) string {
	switch a := abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 4, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
