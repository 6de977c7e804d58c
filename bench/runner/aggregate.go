package runner

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

// repFromStorm condenses one storm report. A nil report (the storm could
// not be run) gives a repetition that carries only err.
func repFromStorm(rep int, r *storm.Report, err error) RepResult {
	out := RepResult{Rep: rep}
	if err != nil {
		out.Error = err.Error()
	}
	if r == nil {
		return out
	}
	out.RunID = r.RunID
	out.Signals = r.Signals
	out.Acknowledged = r.Acknowledged
	out.Failed = r.Failed
	out.Retries = r.Retries
	out.Outcomes = r.Outcomes
	out.DurationSeconds = r.DurationSeconds
	out.Throughput = r.Throughput
	out.Latency = r.Latency
	out.Incidents = len(r.Incidents)
	if v := r.Verification; v != nil {
		if v.Error != "" {
			out.Error = joinErr(out.Error, "verification: "+v.Error)
		} else {
			out.Verified = true
			out.Duplicates = v.Duplicates
			out.RRsFound = v.RRsFound
			out.CountsExact = v.CountsExact
		}
	}
	if a := r.APIRequests; a != nil {
		if a.Error != "" {
			out.Error = joinErr(out.Error, "api requests: "+a.Error)
		} else {
			out.APIMeasured = true
			out.APITotal = a.Total
			out.APIPerSignal = a.PerSignal
			out.APIByResourceVerb = a.ByResourceVerb
		}
	}
	for _, res := range r.Results {
		// As storm's own summary: only signals with a final HTTP answer
		// have a latency.
		if res.Code != 0 && res.Outcome != storm.OutcomeCanceled {
			out.latenciesMs = append(out.latenciesMs, res.LatencyMs)
		}
	}
	return out
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// summarize pools repetitions. Rates are ratios of sums, not means of
// ratios, so that a short repetition does not weigh as much as a long one.
func summarize(reps []RepResult) Summary {
	s := Summary{Reps: len(reps), CountsExact: true}
	var (
		apiSignals int
		apiTotal   float64
		byRV       = map[storm.ResourceVerb]float64{}
		answered   int
		seconds    float64
		pooled     []float64
	)
	for _, r := range reps {
		s.Signals += r.Signals
		s.Acknowledged += r.Acknowledged
		s.Failed += r.Failed
		s.Retries += r.Retries
		if r.Verified {
			s.RepsVerified++
			s.Duplicates += r.Duplicates
			s.MaxDuplicates = max(s.MaxDuplicates, r.Duplicates)
			if r.Duplicates > 0 {
				s.RepsWithDuplicates++
			}
			if r.CountsExact {
				s.RepsCountsExact++
			}
		}
		if r.APIMeasured {
			s.RepsAPIMeasured++
			apiSignals += r.Signals
			apiTotal += r.APITotal
			for _, c := range r.APIByResourceVerb {
				byRV[storm.ResourceVerb{Resource: c.Resource, Verb: c.Verb}] += c.Requests
			}
		}
		answered += len(r.latenciesMs)
		seconds += r.DurationSeconds
		pooled = append(pooled, r.latenciesMs...)
		s.WorstRepP99Ms = max(s.WorstRepP99Ms, r.Latency.P99Ms)
	}
	// Exact only if every repetition was checked and found exact.
	s.CountsExact = len(reps) > 0 && s.RepsVerified == len(reps) && s.RepsCountsExact == len(reps)
	if apiSignals > 0 {
		s.APIPerSignal = apiTotal / float64(apiSignals)
		for k, n := range byRV {
			if n == 0 {
				continue
			}
			s.APIByResourceVerb = append(s.APIByResourceVerb, ResourceRate{Resource: k.Resource, Verb: k.Verb, PerSignal: n / float64(apiSignals)})
		}
		sortRates(s.APIByResourceVerb)
	}
	if seconds > 0 {
		s.Throughput = float64(answered) / seconds
	}
	slices.Sort(pooled)
	s.Latency = latencyOf(pooled)
	s.LatenciesMs = pooled
	return s
}

// sortRates orders by rate, highest first, then by name, so that output
// is deterministic.
func sortRates(rs []ResourceRate) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].PerSignal != rs[j].PerSignal {
			return rs[i].PerSignal > rs[j].PerSignal
		}
		if rs[i].Resource != rs[j].Resource {
			return rs[i].Resource < rs[j].Resource
		}
		return rs[i].Verb < rs[j].Verb
	})
}

// latencyOf summarises sorted milliseconds.
func latencyOf(sorted []float64) Latency {
	return Latency{
		Count: len(sorted),
		P50Ms: percentile(sorted, 50),
		P95Ms: percentile(sorted, 95),
		P99Ms: percentile(sorted, 99),
		MaxMs: percentile(sorted, 100),
	}
}

// latencyOfDurations summarises durations in any order.
func latencyOfDurations(ds []time.Duration) Latency {
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = roundMs(d)
	}
	slices.Sort(ms)
	return latencyOf(ms)
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted,
// the same method as storm.Percentile, so that pooled and per-repetition
// figures agree; 0 for no values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// roundMs is d in milliseconds rounded to 0.1, as storm reports.
func roundMs(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*10) / 10
}

// ratios compares leasehold with each other strategy present.
func ratios(results []StrategyResult) []Ratio {
	var lh *Summary
	for i := range results {
		if results[i].Strategy == Leasehold {
			lh = &results[i].Summary
		}
	}
	if lh == nil {
		return nil
	}
	var out []Ratio
	for _, other := range []Strategy{Baseline, Floor} {
		for i := range results {
			if results[i].Strategy != other {
				continue
			}
			o := &results[i].Summary
			r := Ratio{Name: string(Leasehold) + "/" + string(other), Other: other}
			if lh.RepsAPIMeasured > 0 && o.RepsAPIMeasured > 0 {
				r.APIPerSignal = divide(lh.APIPerSignal, o.APIPerSignal)
			}
			r.Throughput = divide(lh.Throughput, o.Throughput)
			if lh.Latency.Count > 0 && o.Latency.Count > 0 {
				r.P50 = divide(lh.Latency.P50Ms, o.Latency.P50Ms)
				r.P95 = divide(lh.Latency.P95Ms, o.Latency.P95Ms)
				r.P99 = divide(lh.Latency.P99Ms, o.Latency.P99Ms)
			}
			out = append(out, r)
		}
	}
	return out
}

// divide is a/b, or nil when b is zero: a ratio to nothing is not a number
// to print.
func divide(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	q := a / b
	return &q
}

// strategy returns the result of s in sc, or nil.
func (sc *ScenarioResult) strategy(s Strategy) *StrategyResult {
	for i := range sc.Strategies {
		if sc.Strategies[i].Strategy == s {
			return &sc.Strategies[i]
		}
	}
	return nil
}

// ratio returns the ratio to other, or nil.
func (sc *ScenarioResult) ratio(other Strategy) *Ratio {
	for i := range sc.Ratios {
		if sc.Ratios[i].Other == other {
			return &sc.Ratios[i]
		}
	}
	return nil
}
