package storm

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// Run sends the storm cfg describes and reports what happened. It returns
// an error without a report for an invalid config (ErrInvalidConfig) or a
// kube config it cannot use. When ctx ends during the storm it returns the
// partial report (unfinished signals have outcome OutcomeCanceled, no
// verification, no request accounting) together with ctx's error. Problems
// of the optional parts (verification, /metrics) are recorded in the report,
// not returned; Report.Check turns the report into a verdict.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("run", c.RunID)

	s, err := newSender(c)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var kube *kubeAccess
	if c.Kube != nil {
		if kube, err = newKubeAccess(c.Kube); err != nil {
			return nil, fmt.Errorf("storm: kube client: %w", err)
		}
	}
	incs, err := newIncidents(c, c.Clock.Now())
	if err != nil {
		return nil, err
	}
	rep := newReport(c, incs)

	var before RequestCounts
	measure := kube != nil && !c.NoAPIMetrics
	if measure {
		if before, err = kube.scrape(ctx); err != nil {
			// Recorded in the report, which is where the caller looks.
			rep.APIRequests = &APIRequests{Error: err.Error()}
			measure = false
		}
	}

	log.V(1).Info("storm starting", "signals", c.Signals, "rate", c.Rate, "fingerprints", c.Fingerprints, "targets", len(c.Targets))
	rep.StartedAt = c.Clock.Now()
	pace := pacer{clock: c.Clock, start: rep.StartedAt, rate: c.Rate}
	results := storm(ctx, c, s, incs, pace, newProgress(c.Progress, c.Clock, c.Signals))
	run := c.Clock.Since(rep.StartedAt)
	rep.addResults(results, run)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("storm %s interrupted: %w", c.RunID, err)
	}

	if measure {
		rep.APIRequests = measureRequests(ctx, c, kube, before, run)
	}
	if kube != nil {
		rep.Verification = verifyRun(ctx, c, kube, rep)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("storm %s interrupted: %w", c.RunID, err)
	}
	return rep, nil
}

// storm sends every signal and returns their results in index order. Each
// worker takes the next signal as soon as it has finished the previous one
// and pace lets it go, so at most Concurrency signals are in flight and
// none starts before its time. Only the hand-over to a worker is paced: a
// worker's retries of its signal are not. Every signal gets a result, also
// after ctx ends (then without being sent: pace no longer waits and send
// makes no attempt on an ended ctx).
func storm(ctx context.Context, c Config, s *sender, incs []incident, pace pacer, prog *progress) []SignalResult {
	results := make([]SignalResult, c.Signals)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(c.Concurrency, c.Signals) {
		wg.Go(func() {
			for i := range next {
				results[i] = s.send(ctx, i, &incs[incidentOf(i, c.Fingerprints)])
				prog.add(results[i])
			}
		})
	}
	for i := range c.Signals {
		pace.wait(ctx, i)
		next <- i
	}
	close(next)
	wg.Wait()
	prog.finish()
	return results
}

// measureRequests scrapes after the storm, waits an idle interval unless
// the correction is off, scrapes again and does the arithmetic of
// accountRequests.
func measureRequests(ctx context.Context, c Config, kube *kubeAccess, before RequestCounts, run time.Duration) *APIRequests {
	after, err := kube.scrape(ctx)
	if err != nil {
		return &APIRequests{Error: err.Error()}
	}
	if c.NoIdleCorrection {
		return accountRequests(before, after, nil, run, 0, c.Signals)
	}
	idle := idleInterval(run, c.MinIdle, c.MaxIdle)
	// The scale uses the interval actually waited. The counter differences
	// also cover the scrapes' own durations, small next to either interval.
	idleStart := c.Clock.Now()
	t := c.Clock.NewTimer(idle)
	select {
	case <-t.C():
	case <-ctx.Done():
		t.Stop()
		return &APIRequests{Error: fmt.Sprintf("idle interval interrupted: %v", ctx.Err())}
	}
	idleEnd, err := kube.scrape(ctx)
	if err != nil {
		return &APIRequests{Error: fmt.Sprintf("scrape after idle interval: %v", err)}
	}
	return accountRequests(before, after, idleEnd, run, c.Clock.Since(idleStart), c.Signals)
}

// verifyRun lists the run's RemediationRequests, once more on error (the
// gateways' writes are synchronous, so no wait for visibility is needed),
// and records the verdict in the report's incidents.
func verifyRun(ctx context.Context, c Config, kube *kubeAccess, rep *Report) *Verification {
	fps := make([]string, len(rep.Incidents))
	for i, inc := range rep.Incidents {
		fps[i] = inc.Fingerprint
	}
	var (
		rrs []v1alpha1.RemediationRequest
		err error
	)
	for range 2 {
		if rrs, err = kube.listRRs(ctx, c.RRNamespace, fps); err == nil {
			break
		}
	}
	if err != nil {
		return &Verification{Namespace: c.RRNamespace, RRsExpected: len(rep.Incidents), Error: err.Error()}
	}
	return verify(c.RRNamespace, rep.Incidents, rrs)
}
