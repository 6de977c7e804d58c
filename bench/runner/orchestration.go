package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/storm"
)

// orchestrationNamespace is where S4's requests, executions and Leases
// live.
const orchestrationNamespace = "bench-orchestrator"

// createWorkers bounds the concurrent creates of S4's requests: they
// arrive together, as a storm's would, without one connection per request.
const createWorkers = 10

// orchestrationScenario runs S4: orchestrator replicas and the simulated
// executor take requests queued on a few targets to completion. Requests
// are created directly, not through gateways, so that the figures are the
// orchestrator's alone.
func (r *run) orchestrationScenario(ctx context.Context, sc scenario) (res ScenarioResult) {
	res = ScenarioResult{ID: sc.id, Title: sc.title, Params: sc.params}
	res.Notes = append(res.Notes, "leasehold only: the original design's orchestrator is not rebuilt for comparison (see Method).")
	fail := func(err error) ScenarioResult {
		res.Error = joinErr(res.Error, err.Error())
		return res
	}
	binary, err := r.leaseholdBinary(ctx)
	if err != nil {
		return fail(err)
	}
	e, err := r.startEnv(ctx, sc.id, []string{orchestrationNamespace})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := e.stop(); err != nil {
			res.Notes = append(res.Notes, "stopping the services: "+oneLine(err.Error()))
		}
	}()
	var svcs []service
	for i := range sc.params.Replicas {
		svcs = append(svcs, e.controllerService(binary, "orchestrator", fmt.Sprintf("orchestrator-%d", i), orchestrationNamespace))
	}
	svcs = append(svcs, e.controllerService(binary, "executor", "executor-0", orchestrationNamespace,
		"--simulate", "--duration", sc.execution.String()))
	r.progress("%s: starting %d orchestrator(s) and the simulated executor", sc.id, sc.params.Replicas)
	if _, err := e.startServices(ctx, svcs); err != nil {
		return fail(err)
	}

	total := &OrchestrationResult{Strategy: Leasehold}
	var (
		handoffs, latencies []time.Duration
		seconds             float64
		apiRRs              int
		apiRows             []storm.APIRequestCount
	)
	for rep := 1; rep <= sc.params.Reps; rep++ {
		o, err := r.orchestrationRep(ctx, e, sc, rep)
		if o != nil {
			total.RRs += o.RRs
			total.Completed += o.completed
			total.Failed += o.failed
			total.Unfinished += o.unfinished
			total.Executions += o.replay.executions
			total.MaxActivePerTarget = max(total.MaxActivePerTarget, o.replay.maxActive)
			total.Duplicates += o.replay.duplicates
			total.Violations = append(total.Violations, o.replay.violations...)
			total.Gaps = append(total.Gaps, o.gaps...)
			handoffs = append(handoffs, o.replay.handoffs...)
			latencies = append(latencies, o.latencies...)
			seconds += o.duration.Seconds()
			if o.apiMeasured {
				apiRRs += o.RRs
				apiRows = append(apiRows, o.apiRows...)
			}
			r.progress("%s rep %d/%d: %d/%d requests completed, %d executions, at most %d active per target, hand-off p95 %s ms",
				sc.id, rep, sc.params.Reps, o.completed, o.RRs, o.replay.executions, o.replay.maxActive, num(latencyOfDurations(o.replay.handoffs).P95Ms))
		}
		if err != nil {
			res.Error = joinErr(res.Error, fmt.Sprintf("rep %d: %v", rep, err))
			break
		}
	}
	total.Handoff = latencyOfDurations(handoffs)
	total.Latency = latencyOfDurations(latencies)
	total.DurationSeconds = seconds
	if seconds > 0 {
		total.Throughput = float64(total.Completed+total.Failed) / seconds
	}
	if apiRRs > 0 {
		total.APIMeasured = true
		total.APIByResourceVerb, total.APIPerRR = mergeRows(apiRows, apiRRs)
	}
	res.Orchestration = total
	return res
}

// orchestrationRep is what one repetition of S4 saw.
type orchestrationRep struct {
	RRs                           int
	completed, failed, unfinished int
	replay                        executionReplay
	latencies                     []time.Duration
	duration                      time.Duration
	gaps                          []string
	apiMeasured                   bool
	apiRows                       []storm.APIRequestCount
}

// orchestrationRep creates the repetition's requests on targets of its own
// (a cluster name per repetition, so that sequences start at 1), waits
// until every one is terminal, and replays what the watches saw.
func (r *run) orchestrationRep(ctx context.Context, e *env, sc scenario, rep int) (*orchestrationRep, error) {
	clk := r.opts.Clock
	executions, err := startRecorder(ctx, e.cli, clk, orchestrationNamespace, "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} })
	if err != nil {
		return nil, err
	}
	defer executions.close()
	requests, err := startRecorder(ctx, e.cli, clk, orchestrationNamespace, "requests",
		func() client.ObjectList { return &v1alpha1.RemediationRequestList{} })
	if err != nil {
		return nil, err
	}
	defer requests.close()

	before, apiErr := e.scrapeRequests(ctx)

	cluster := fmt.Sprintf("bench-r%d", rep)
	rrs := make([]*v1alpha1.RemediationRequest, sc.params.RRs)
	now := clk.Now()
	for i := range rrs {
		t := v1alpha1.TargetRef{Cluster: cluster, APIVersion: "v1", Kind: "Node", Name: fmt.Sprintf("node-%d", i%sc.params.Targets)}
		// Arrival order is creation order: the orchestrator starts the
		// requests of a target by receivedAt.
		rrs[i] = newRequest(fmt.Sprintf("s4-r%d-%03d", rep, i), t, now.Add(time.Duration(i)*time.Microsecond))
	}
	createdAt, err := r.createRequests(ctx, e, rrs)
	start := clk.Now()
	for _, t := range createdAt {
		if t.Before(start) {
			start = t
		}
	}
	out := &orchestrationRep{RRs: len(rrs)}
	if err != nil {
		return out, err
	}

	waitErr := r.waitRequestsTerminal(ctx, requests, createdAt)
	reqChanges, reqGaps := requests.snapshot()
	rr := replayRequests(reqChanges, createdAt)
	out.completed, out.failed, out.unfinished, out.latencies = rr.completed, rr.failed, rr.unfinished, rr.latencies
	end := rr.lastEnd
	if end.IsZero() || out.unfinished > 0 {
		end = clk.Now()
	}
	out.duration = end.Sub(start)
	// The last requests turned terminal after their executions; by now the
	// execution watch has those too (it is never behind by more than the
	// request watch, but a short catch-up costs nothing).
	_ = r.wait(ctx, 200*time.Millisecond)
	execChanges, execGaps := executions.snapshot()
	out.replay = replayExecutions(execChanges, func(w *v1alpha1.WorkflowExecution) bool { return w.Spec.Target.Cluster == cluster })
	out.gaps = append(reqGaps, execGaps...)

	if apiErr == nil {
		rows, err := r.measureIdle(ctx, e, before, out.duration, len(rrs))
		if err == nil {
			out.apiMeasured, out.apiRows = true, rows
		}
	}
	return out, waitErr
}

// createRequests creates rrs with createWorkers at a time and returns when
// each create was sent.
func (r *run) createRequests(ctx context.Context, e *env, rrs []*v1alpha1.RemediationRequest) (map[string]time.Time, error) {
	var (
		mu        sync.Mutex
		createdAt = make(map[string]time.Time, len(rrs))
		errs      []error
		wg        sync.WaitGroup
		next      = make(chan *v1alpha1.RemediationRequest)
	)
	for range min(createWorkers, len(rrs)) {
		wg.Go(func() {
			for rr := range next {
				at := r.opts.Clock.Now()
				err := e.cli.Create(ctx, rr)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("create request %s: %w", rr.Name, err))
				} else {
					createdAt[rr.Name] = at
				}
				mu.Unlock()
			}
		})
	}
	for _, rr := range rrs {
		next <- rr
	}
	close(next)
	wg.Wait()
	return createdAt, errors.Join(errs...)
}

// waitRequestsTerminal waits until the watch has seen every created request
// terminal, within Options.SettleTimeout.
func (r *run) waitRequestsTerminal(ctx context.Context, requests *recorder, createdAt map[string]time.Time) error {
	deadline := r.opts.Clock.NewTimer(r.opts.SettleTimeout)
	defer deadline.Stop()
	for {
		changes, gaps := requests.snapshot()
		if rr := replayRequests(changes, createdAt); rr.unfinished == 0 {
			return nil
		}
		if len(gaps) > 0 {
			return fmt.Errorf("the watch of requests lost changes: %s", gaps[0])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C():
			rr := replayRequests(changes, createdAt)
			return fmt.Errorf("%d of %d requests not terminal after %v", rr.unfinished, len(createdAt), r.opts.SettleTimeout)
		case <-requests.notify:
		}
	}
}

// measureIdle scrapes after the run, waits an idle interval, scrapes again
// and accounts the run's requests per request created.
func (r *run) measureIdle(ctx context.Context, e *env, before storm.RequestCounts, run time.Duration, n int) ([]storm.APIRequestCount, error) {
	after, err := e.scrapeRequests(ctx)
	if err != nil {
		return nil, err
	}
	idle := idleInterval(run)
	idleStart := r.opts.Clock.Now()
	if err := r.wait(ctx, idle); err != nil {
		return nil, err
	}
	idleEnd, err := e.scrapeRequests(ctx)
	if err != nil {
		return nil, err
	}
	rows, _ := accountRequests(before, after, idleEnd, run, r.opts.Clock.Since(idleStart), n)
	return rows, nil
}

// newRequest is a request as the gateway creates it: labelled, with a
// fingerprint of its own (no two requests of the scenario are one
// incident) and receivedAt as given.
func newRequest(name string, t v1alpha1.TargetRef, receivedAt time.Time) *v1alpha1.RemediationRequest {
	sum := sha256.Sum256([]byte(name))
	fp := hex.EncodeToString(sum[:])
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: orchestrationNamespace,
			Labels: map[string]string{
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(t),
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  fp,
			SignalName:   "BenchNodeNotReady",
			Severity:     "critical",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       t,
			SignalTarget: t,
			ReceivedAt:   metav1.NewMicroTime(receivedAt),
		},
	}
}
