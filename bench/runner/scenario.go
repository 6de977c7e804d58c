package runner

import (
	"time"
)

// kind is what a scenario exercises.
type kind int

const (
	kindStorm kind = iota
	kindOrchestration
	kindLocks
)

// scenario is one scenario's definition with its sizes resolved.
type scenario struct {
	id, title string
	kind      kind
	params    Params
	// strategies are compared in a storm scenario, in canonical order.
	strategies []Strategy
	// execution is S4's simulated execution time.
	execution time.Duration
}

// plan returns the scenarios o asks for, with the sizes or, with
// Quick, small ones that exercise the same code paths.
func plan(o Options) []scenario {
	all := []Strategy{Leasehold, Baseline, Floor}
	defs := map[string]scenario{
		"S1": {id: "S1", title: "storm: identical signals, all at once", kind: kindStorm, strategies: all,
			params: Params{Signals: 100, Fingerprints: 1, Concurrency: 100, Replicas: DefaultReplicas, Reps: o.Reps}},
		"S2": {id: "S2", title: "distinct: one signal per fingerprint", kind: kindStorm, strategies: all,
			params: Params{Signals: 2000, Fingerprints: 2000, Concurrency: 50, Replicas: DefaultReplicas, Reps: o.OtherReps}},
		"S3": {id: "S3", title: "mixed: many signals over few fingerprints", kind: kindStorm, strategies: all,
			params: Params{Signals: 2000, Fingerprints: 20, Concurrency: 50, Replicas: DefaultReplicas, Reps: o.OtherReps}},
		"S4": {id: "S4", title: "orchestrator: requests queued on shared targets", kind: kindOrchestration, execution: 200 * time.Millisecond,
			params: Params{RRs: 50, Targets: 5, Replicas: DefaultReplicas, ExecutionMs: 200, Reps: o.OtherReps}},
		"S5": {id: "S5", title: "lock micro-benchmarks", kind: kindLocks,
			params: Params{Iterations: o.LockIterations}},
	}
	if o.Quick {
		shrink := map[string]func(*Params){
			"S1": func(p *Params) { p.Signals, p.Concurrency = 30, 30 },
			"S2": func(p *Params) { p.Signals, p.Fingerprints, p.Concurrency = 150, 150, 20 },
			"S3": func(p *Params) { p.Signals, p.Fingerprints, p.Concurrency = 150, 5, 20 },
			"S4": func(p *Params) { p.RRs, p.Targets = 12, 3 },
		}
		for id, f := range shrink {
			d := defs[id]
			f(&d.params)
			defs[id] = d
		}
	}
	out := make([]scenario, 0, len(o.Scenarios))
	for _, id := range o.Scenarios {
		out = append(out, defs[id])
	}
	return out
}

// rotate returns s rotated left by n: repetition n starts with a different
// strategy, so that none always runs first (on the coldest caches) or
// last.
func rotate[T any](s []T, n int) []T {
	if len(s) == 0 {
		return nil
	}
	n %= len(s)
	out := make([]T, 0, len(s))
	out = append(out, s[n:]...)
	return append(out, s[:n]...)
}
