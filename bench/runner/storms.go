package runner

import (
	"context"
	"fmt"
	"strings"

	"github.com/leasehold/leasehold/internal/storm"
)

// namespaceOf is where strategy s's gateways write: one namespace per
// strategy, so that no strategy lists or counts another's requests.
func namespaceOf(s Strategy) string { return "bench-" + string(s) }

// warmupSignals is the size of the unmeasured storm each strategy gets
// before the first repetition: enough to open connections from every
// replica and fill the API server's caches for the namespace.
const warmupSignals = 12

// stormScenario runs S1, S2 or S3: every strategy's replicas up at once,
// then the repetitions, the strategies taking turns in an order that
// rotates each repetition.
func (r *run) stormScenario(ctx context.Context, sc scenario) (res ScenarioResult) {
	res = ScenarioResult{ID: sc.id, Title: sc.title, Params: sc.params}
	fail := func(err error) ScenarioResult {
		res.Error = joinErr(res.Error, err.Error())
		return res
	}
	binary, err := r.gatewayBinary(ctx)
	if err != nil {
		return fail(err)
	}
	namespaces := make([]string, len(sc.strategies))
	for i, s := range sc.strategies {
		namespaces[i] = namespaceOf(s)
	}
	e, err := r.startEnv(ctx, sc.id, namespaces)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := e.stop(); err != nil {
			res.Notes = append(res.Notes, "stopping the services: "+oneLine(err.Error()))
		}
	}()

	targets := map[Strategy][]string{}
	for _, s := range sc.strategies {
		r.progress("%s: starting %d %s gateway(s)", sc.id, sc.params.Replicas, s)
		urls, err := e.startServices(ctx, e.gatewayServices(binary, s, namespaceOf(s), sc.params.Replicas))
		if err != nil {
			return fail(fmt.Errorf("start %s gateways: %w", s, err))
		}
		targets[s] = urls
	}

	for _, s := range sc.strategies {
		w, err := storm.Run(ctx, storm.Config{Targets: targets[s], Signals: warmupSignals, Fingerprints: 2})
		if err != nil {
			return fail(fmt.Errorf("warm-up of %s: %w", s, err))
		}
		if w.Failed > 0 {
			return fail(fmt.Errorf("warm-up of %s: %d of %d signals not acknowledged (outcomes %v)", s, w.Failed, w.Signals, w.Outcomes))
		}
	}

	reps := map[Strategy][]RepResult{}
	for rep := 1; rep <= sc.params.Reps; rep++ {
		for _, s := range rotate(sc.strategies, rep-1) {
			rr := r.stormRep(ctx, e, sc, s, targets[s], rep)
			reps[s] = append(reps[s], rr)
			if ctx.Err() != nil {
				res.Error = joinErr(res.Error, "interrupted: "+ctx.Err().Error())
				return r.finishStorm(res, sc, reps)
			}
		}
	}
	return r.finishStorm(res, sc, reps)
}

// stormRep is one storm against one strategy's replicas.
func (r *run) stormRep(ctx context.Context, e *env, sc scenario, s Strategy, urls []string, rep int) RepResult {
	p := sc.params
	report, err := storm.Run(ctx, storm.Config{
		Targets:      urls,
		Signals:      p.Signals,
		Fingerprints: p.Fingerprints,
		Concurrency:  p.Concurrency,
		Kube:         e.cp.Config,
		RRNamespace:  namespaceOf(s),
	})
	if err != nil && report == nil {
		err = fmt.Errorf("storm: %w", err)
	}
	out := repFromStorm(rep, report, err)
	r.progress("%s rep %d/%d %s: %d/%d acknowledged, duplicates %s, counts exact %s, %s API requests/signal, p99 %s ms, %s signals/s",
		sc.id, rep, p.Reps, s, out.Acknowledged, out.Signals, verifiedInt(out.Verified, out.Duplicates), verifiedBool(out.Verified, out.CountsExact),
		num(out.APIPerSignal), num(out.Latency.P99Ms), num(out.Throughput))
	if out.Error != "" {
		r.progress("%s rep %d %s: %s", sc.id, rep, s, out.Error)
	}
	return out
}

// finishStorm summarises what the repetitions gave, in canonical strategy
// order, and adds the ratios and notes.
func (r *run) finishStorm(res ScenarioResult, sc scenario, reps map[Strategy][]RepResult) ScenarioResult {
	var errs []string
	for _, s := range sc.strategies {
		if len(reps[s]) == 0 {
			continue
		}
		for _, rr := range reps[s] {
			if rr.Error != "" {
				errs = append(errs, fmt.Sprintf("%s rep %d: %s", s, rr.Rep, rr.Error))
			}
		}
		res.Strategies = append(res.Strategies, StrategyResult{Strategy: s, Summary: summarize(reps[s]), Reps: reps[s]})
	}
	res.Ratios = ratios(res.Strategies)
	for _, e := range errs {
		res.Notes = append(res.Notes, "problem: "+oneLine(e))
	}
	return res
}

func verifiedInt(ok bool, n int) string {
	if !ok {
		return "unverified"
	}
	return fmt.Sprint(n)
}

func verifiedBool(ok, v bool) string {
	if !ok {
		return "unverified"
	}
	return yesNo(v)
}

// oneLine keeps the first line of an error, for notes in a table-based
// page; the JSON keeps the scenario's error in full.
func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	return s
}
