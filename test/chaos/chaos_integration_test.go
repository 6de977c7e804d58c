//go:build integration

package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/overlap"
	"github.com/leasehold/leasehold/internal/storm"
	"github.com/leasehold/leasehold/lease"
)

// The storm of every run: 620 alerts about 31 workloads, 40 a second over
// 15.5 s, so that each fault lands while signals arrive. The storm sends
// signal i to gateway i mod 3 first; 31 incidents, not a multiple of 3,
// spread each incident's signals over all three gateways, so that they
// race each other for every incident. Executions take 1 s, so incidents
// finish during the storm and later signals open the next request of the
// same incident.
const (
	stormSignals      = 620
	stormFingerprints = 31
	stormRate         = 40
	stormConcurrency  = 50
)

// Beside the storm, each run queues directRequests requests on each of
// directTargets shared targets, as several sources of one target would:
// the gateway never has two requests in progress for one target, so only
// these make the orchestrators' replicas queue work for one target.
const (
	directTargets  = 3
	directRequests = 5
)

// faultHold is how long a pause or a partition lasts: past the lease
// duration, so the victims' locks expire and others take over meanwhile.
const faultHold = leaseDuration + 3*time.Second

// holdTimeout bounds the wait for a victim to be caught holding a lock.
const holdTimeout = 30 * time.Second

// scenario is one fault and the system it hits.
type scenario struct {
	Scenario
	opts clusterOptions
	// inject runs beside the storm, from its start, and records the fault
	// in f. Nil for scenarios whose condition is set at start (clock skew).
	inject func(ctx context.Context, c *cluster, f *fault) error
}

// fault is what an inject did: when the fault ended, which replicas it
// killed, and the Leases its victims held when it began.
type fault struct {
	mu     sync.Mutex
	end    time.Time
	killed map[*replica]bool
	held   []leaseRef
	notes  []string
	// after run once the storm is over: faults that last as long as it.
	after []func() error
	// swept counts the Leases sweepers deleted.
	swept int
}

func (f *fault) afterStorm(fn func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = append(f.after, fn)
}

// hit records a Lease a victim held when the fault began.
func (f *fault) hit(l coordinationv1.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = append(f.held, leaseRef{name: l.Name, holder: holder(l), rv: l.ResourceVersion})
}

func (f *fault) ended(at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if at.After(f.end) {
		f.end = at
	}
}

func (f *fault) note(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notes = append(f.notes, fmt.Sprintf(format, args...))
}

var scenarios = []scenario{
	{
		Scenario: Scenario{Name: "control", Fault: "no fault."},
	},
	{
		Scenario: Scenario{Name: "kill", Fault: "gateway and orchestrator replica 0 are killed with SIGKILL while each holds a lock (a test hook stretches their critical sections by 1 s; the kill waits until their Lease is seen held). They stay down."},
		opts:     lockHooks(),
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			return onBoth(c, func(r *replica, prefix string) error {
				l, err := c.waitHolding(ctx, r, prefix, holdTimeout)
				if err != nil {
					return err
				}
				if err := r.process().Kill(); err != nil {
					return err
				}
				f.ended(time.Now())
				f.mu.Lock()
				f.killed[r] = true
				f.mu.Unlock()
				f.hit(l)
				return nil
			})
		},
	},
	{
		Scenario: Scenario{Name: "pause", Fault: fmt.Sprintf("gateway and orchestrator replica 0 are stopped with SIGSTOP while each holds a lock (hooks as in kill), for %v, past the %v lease, then continued with SIGCONT.", faultHold, leaseDuration)},
		opts:     lockHooks(),
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			return onBoth(c, func(r *replica, prefix string) error { return pauseHolder(ctx, c, f, r, prefix) })
		},
	},
	{
		Scenario: Scenario{Name: "apiserver-restart", Fault: "the API server is stopped and started again (same port, certificates, etcd) 3 s into the storm."},
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			if err := wait(ctx, 3*time.Second); err != nil {
				return err
			}
			start := time.Now()
			if err := cp.RestartAPIServer(); err != nil {
				return err
			}
			f.ended(time.Now())
			f.note("API server down and up in %.1f s", time.Since(start).Seconds())
			return nil
		},
	},
	{
		Scenario: Scenario{Name: "etcd-restart", Fault: "etcd is stopped and started again (same port, data) 3 s into the storm; the API server keeps running."},
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			if err := wait(ctx, 3*time.Second); err != nil {
				return err
			}
			start := time.Now()
			if err := cp.RestartEtcd(); err != nil {
				return err
			}
			f.ended(time.Now())
			f.note("etcd down and up in %.1f s", time.Since(start).Seconds())
			return nil
		},
	},
	{
		Scenario: Scenario{Name: "partition-refuse", Fault: fmt.Sprintf("gateway and orchestrator replica 0 lose the API server 3 s into the storm for %v: their proxy resets open connections and refuses new ones.", faultHold)},
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			return partition(ctx, c, f, faultproxy.Refuse)
		},
	},
	{
		Scenario: Scenario{Name: "partition-blackhole", Fault: fmt.Sprintf("as partition-refuse, but the proxy keeps connections open and silently drops their bytes, and accepts new ones that never answer, for %v.", faultHold)},
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			return partition(ctx, c, f, faultproxy.Blackhole)
		},
	},
	{
		Scenario: Scenario{Name: "clock-skew", Fault: "gateway and orchestrator replica 0 run 10 minutes ahead, replica 1 10 minutes behind, replica 2 on time (the test-only clock offset); the gateways lock all writes."},
		opts: clusterOptions{
			lockWrites:       "all",
			gatewayArgs:      map[int][]string{0: {"--test-clock-offset", "10m"}, 1: {"--test-clock-offset", "-10m"}},
			orchestratorArgs: map[int][]string{0: {"--test-clock-offset", "10m"}, 1: {"--test-clock-offset", "-10m"}},
		},
	},
	{
		Scenario: Scenario{Name: "lease-churn", Fault: "two sweepers per lock prefix delete every Lease unchanged for one lease duration, every 100 ms, through the storm, while gateway and orchestrator replica 0 are paused as in pause, so the sweepers delete the Leases of paused holders and others create them anew."},
		opts:     lockHooks(),
		inject: func(ctx context.Context, c *cluster, f *fault) error {
			sctx, cancel := context.WithCancel(ctx)
			var swept sync.WaitGroup
			counts := make([]int, 4)
			var errs []error
			var errMu sync.Mutex
			for i, prefix := range []string{"gw-lock", "gw-lock", "ro-lock", "ro-lock"} {
				locker, err := lease.New(clientset.CoordinationV1(), lease.Options{
					Namespace: c.ns, Identity: fmt.Sprintf("sweeper-%d", i), Prefix: prefix, LeaseDuration: leaseDuration,
				})
				if err != nil {
					cancel()
					return err
				}
				swept.Go(func() {
					defer locker.Close()
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for {
						n, err := locker.Sweep(sctx, leaseDuration)
						counts[i] += n
						if err != nil && sctx.Err() == nil {
							errMu.Lock()
							errs = append(errs, err)
							errMu.Unlock()
						}
						select {
						case <-sctx.Done():
							return
						case <-tick.C:
						}
					}
				})
			}
			// The sweepers run on through the recovery, until the storm is
			// over.
			f.afterStorm(func() error {
				cancel()
				swept.Wait()
				f.mu.Lock()
				f.swept = counts[0] + counts[1] + counts[2] + counts[3]
				f.mu.Unlock()
				return errors.Join(errs...)
			})
			return onBoth(c, func(r *replica, prefix string) error { return pauseHolder(ctx, c, f, r, prefix) })
		},
	},
}

// lockHooks are the options of the scenarios that catch replicas holding
// locks: the gateways lock every write, and replica 0 of each service holds
// its lock a second longer than it needs.
func lockHooks() clusterOptions {
	return clusterOptions{
		lockWrites:       "all",
		gatewayArgs:      map[int][]string{0: {"--test-critical-section-delay", "1s"}},
		orchestratorArgs: map[int][]string{0: {"--test-check-to-create-delay", "1s"}},
	}
}

// onBoth runs fn for gateway replica 0 and orchestrator replica 0 at once,
// with the prefix of their locks.
func onBoth(c *cluster, fn func(r *replica, prefix string) error) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = fn(c.gateways[0], gatewayLeasePrefix) })
	wg.Go(func() { errs[1] = fn(c.orchestrators[0], orchestratorLeasePrefix) })
	wg.Wait()
	return errors.Join(errs...)
}

// pauseHolder stops r while it holds a lock of prefix, for faultHold.
func pauseHolder(ctx context.Context, c *cluster, f *fault, r *replica, prefix string) error {
	l, err := c.waitHolding(ctx, r, prefix, holdTimeout)
	if err != nil {
		return err
	}
	p := r.process()
	if err := p.Pause(); err != nil {
		return err
	}
	f.hit(l)
	werr := wait(ctx, faultHold)
	if err := p.Resume(); err != nil {
		return err
	}
	f.ended(time.Now())
	return werr
}

// partition cuts replica 0 of each service off the API server 3 s into the
// storm, for faultHold.
func partition(ctx context.Context, c *cluster, f *fault, mode faultproxy.Mode) error {
	if err := wait(ctx, 3*time.Second); err != nil {
		return err
	}
	victims := []*replica{c.gateways[0], c.orchestrators[0]}
	if ls, err := c.leases(ctx); err == nil {
		for _, r := range victims {
			for _, l := range heldBy(ls, "", r) {
				f.hit(l)
			}
		}
	}
	for _, r := range victims {
		r.proxy.SetMode(mode)
	}
	werr := wait(ctx, faultHold)
	for _, r := range victims {
		r.proxy.SetMode(faultproxy.Pass)
	}
	f.ended(time.Now())
	return werr
}

// wait waits d or until ctx ends. Faults last a set time on purpose; no
// check depends on a wait.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// results collects every run's result for the report.
var (
	resultsMu sync.Mutex
	results   []Result
)

func TestChaos(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			for i := range *runs {
				t.Run(fmt.Sprintf("run-%d", i+1), func(t *testing.T) {
					r := runScenario(t, sc, i+1)
					resultsMu.Lock()
					results = append(results, r)
					resultsMu.Unlock()
					for _, f := range r.Failures {
						t.Error(f)
					}
				})
			}
		})
	}
	if *reportPath != "" {
		var list []Scenario
		for _, sc := range scenarios {
			list = append(list, sc.Scenario)
		}
		f, err := os.Create(*reportPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		meta := ReportMeta{Command: *reportCmd, Date: time.Now(), Runs: *runs, Setup: setupLines()}
		if err := WriteReport(f, meta, list, results); err != nil {
			t.Fatal(err)
		}
	}
}

func setupLines() []string {
	return []string{
		fmt.Sprintf("System: %d gateway and %d orchestrator processes and the simulated executor (executions take 1 s), one real kube-apiserver and etcd, all on one 2-core machine; %v leases; replica 0 of each service reaches the API server through a TCP proxy the test controls.", replicas, replicas, leaseDuration),
		fmt.Sprintf("Storm per run: %d alerts about %d workloads at %d/s (concurrency %d) through `storm.Run`, which retries 429s, 5xx and failed attempts, as Alertmanager does, on the next gateway; beside it, %d requests on each of %d shared targets created directly, so executions queue per target.", stormSignals, stormFingerprints, stormRate, stormConcurrency, directRequests, directTargets),
		"Checks per run, each of which fails the run: every signal acknowledged (lost = never acknowledged, or acknowledged and not counted); no incident with two requests in progress at any moment, seen by a watch of etcd replaying every change in commit order; acknowledged <= occurrenceCount <= sent per incident, which with every signal acknowledged means exact counts; every request Completed; at most one active WorkflowExecution per target at every change; no Lease still renewed once all work is done; no replica exited unless killed; every replica stops cleanly on SIGTERM.",
		"Recovery: from the fault's end (the kill, SIGCONT, the server back, the partition healed) until every Lease the victims held at the fault was released or taken over and a WorkflowExecution started after the fault's end (once the fault has ended and the storm is over, one more request is created on a target of its own, so that one has to).",
		"Abandoned Leases: left by killed or cut-off holders, expired (unchanged for a lease duration), deleted by `leasehold locks sweep` or taken over on next use.",
	}
}

// runScenario runs sc once in its own namespace and returns what it found.
func runScenario(t *testing.T, sc scenario, run int) Result {
	began := time.Now()
	ctx := t.Context()
	res := Result{Scenario: sc.Name, Run: run, Recovery: -1, SignalsSent: stormSignals, Incidents: stormFingerprints, DirectRequests: directTargets * directRequests}
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }

	c := newCluster(t, fmt.Sprintf("chaos-%s-%d", sc.Name, run), sc.opts)
	// The watches read etcd itself: an API server restart would make a
	// watch through it miss the changes made meanwhile.
	group := v1alpha1.GroupVersion.Group
	requests, err := overlap.StartEtcd(ctx, cp.EtcdURL(), overlap.EtcdKey(group, "remediationrequests", c.ns), "requests", overlap.DecodeRequest, overlap.Requests)
	if err != nil {
		t.Fatal(err)
	}
	defer requests.Close()
	executions, err := overlap.StartEtcd(ctx, cp.EtcdURL(), overlap.EtcdKey(group, "workflowexecutions", c.ns), "executions", overlap.DecodeExecution, overlap.Executions)
	if err != nil {
		t.Fatal(err)
	}
	defer executions.Close()

	createDirect(t, c.ns)
	type stormOut struct {
		rep *storm.Report
		err error
	}
	stormDone := make(chan stormOut, 1)
	go func() {
		rep, err := storm.Run(ctx, storm.Config{
			Targets:      c.gatewayURLs(),
			Signals:      stormSignals,
			Fingerprints: stormFingerprints,
			Concurrency:  stormConcurrency,
			Rate:         stormRate,
			Kube:         cp.Config,
			RRNamespace:  c.ns,
			NoAPIMetrics: true,
		})
		stormDone <- stormOut{rep, err}
	}()

	f := &fault{killed: map[*replica]bool{}}
	if sc.inject != nil {
		if err := sc.inject(ctx, c, f); err != nil {
			fail("fault: %v", err)
		}
	}
	// Recovery is measured from the fault's end; the Lease poll starts now.
	type moved struct {
		at   time.Time
		each map[leaseRef]time.Time
		err  error
	}
	movedCh := make(chan moved, 1)
	if !f.end.IsZero() {
		go func() {
			at, each, err := c.waitLeasesMoved(ctx, f.held, 90*time.Second)
			movedCh <- moved{at, each, err}
		}()
	}

	out := <-stormDone
	for _, fn := range f.after {
		if err := fn(); err != nil {
			fail("fault: %v", err)
		}
	}
	if out.err != nil {
		fail("storm: %v", out.err)
	}
	// A fault that outlasts the storm's work (an API server that drains
	// for seconds before it stops) can leave nothing to do once it ends.
	// One more request, on a target of its own, makes sure an execution
	// has to start after the fault's end, so that recovery is always
	// measured rather than assumed.
	settled := stormFingerprints + directTargets*directRequests
	if !f.end.IsZero() {
		probe := directRequest(c.ns, v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "recovery-probe"}, 0, time.Now())
		if err := cli.Create(ctx, probe); err != nil {
			fail("create the recovery probe %s: %v", probe.Name, err)
		} else {
			settled++
		}
	}
	rep := out.rep
	if rep != nil {
		checkStorm(rep, &res, fail)
	}
	for _, msg := range c.checkAlive(f.killed) {
		fail("%s", msg)
	}

	if err := c.waitSettled(ctx, settled, 3*time.Minute); err != nil {
		fail("%v", err)
	} else {
		checkCompleted(ctx, c, fail)
		// A watch judges only the changes it has seen: it must have seen
		// the final state of every object before its verdict counts.
		if err := caughtUp(ctx, c, requests, executions); err != nil {
			fail("%v", err)
		}
	}

	if !f.end.IsZero() {
		m := <-movedCh
		for ref, at := range m.each {
			t.Logf("Lease %s of %s moved %.1f s after the fault's end", ref.name, ref.holder, at.Sub(f.end).Seconds())
		}
		first := executions.AddedAfter(f.end)
		switch {
		case m.err != nil:
			fail("recovery: %v", m.err)
		case len(first) == 0:
			fail("recovery: no execution started after the fault ended")
		default:
			last := m.at
			if first[0].At.After(last) {
				last = first[0].At
			}
			res.Recovery = max(0, last.Sub(f.end))
		}
	}

	for _, msg := range c.stopAll() {
		fail("%s", msg)
	}
	held, abandoned, err := c.settleLeases(ctx)
	if err != nil {
		fail("leases: %v", err)
	}
	res.LeasesHeld, res.LeasesAbandoned = len(held), len(abandoned)
	if len(held) > 0 {
		fail("Leases still renewed after all work was done: %v", held)
	}

	rrs := requests.Result(nil)
	wfes := executions.Result(nil)
	res.Duplicates += len(rrs.Violations)
	for _, v := range rrs.Violations {
		fail("duplicate: %s", v)
	}
	res.MaxActiveWFE = wfes.MaxActiveAny
	for _, v := range wfes.Violations {
		fail("exclusion: %s", v)
	}
	for _, g := range append(rrs.Gaps, wfes.Gaps...) {
		fail("watch: %s", g)
	}
	for _, n := range f.notes {
		t.Log(n)
	}
	res.Swept = f.swept
	res.Duration = time.Since(began)
	t.Logf("%s run %d: %d/%d acknowledged, %d/%d incidents found, %d successive, %d duplicates, %d lost, bounds %v, max active WFEs %d, recovery %v, Leases held %d abandoned %d swept %d, %.0f s",
		sc.Name, run, res.Acknowledged, res.SignalsSent, res.IncidentsFound, res.Incidents, res.Successive, res.Duplicates, res.Lost,
		res.BoundsHeld, res.MaxActiveWFE, res.Recovery, res.LeasesHeld, res.LeasesAbandoned, res.Swept, res.Duration.Seconds())
	if len(res.Failures) > 0 {
		t.Logf("warning events:\n%s", c.events(context.WithoutCancel(ctx)))
	}
	return res
}

// checkStorm turns the storm's report into the run's figures and failures.
// Every signal the storm sends is a firing alert, so acknowledged equals
// counted, and once every signal is acknowledged the bound is exactness: a
// signal counted twice (a retry after an answer that hid a count) shows as
// occurrenceCount above sent.
func checkStorm(rep *storm.Report, res *Result, fail func(string, ...any)) {
	res.Acknowledged = rep.Acknowledged
	res.Lost = rep.Failed
	if rep.Failed > 0 {
		fail("%d signals never acknowledged (outcomes %v)", rep.Failed, rep.Outcomes)
	}
	v := rep.Verification
	if v == nil || v.Error != "" {
		fail("verification: %+v", v)
		return
	}
	res.Duplicates += v.Duplicates
	res.Successive = v.Successive
	res.BoundsHeld = true
	for _, inc := range rep.Incidents {
		if inc.Found == nil {
			continue
		}
		if inc.Found.RRs > 0 {
			res.IncidentsFound++
		}
		occ := inc.Found.OccurrenceCount
		if under := int64(inc.Counted) - occ; under > 0 {
			res.Lost += int(under)
		}
		if occ < int64(inc.Counted) || occ > int64(inc.Sent) {
			res.BoundsHeld = false
			fail("incident %s: occurrenceCount %d outside [acknowledged %d, sent %d] over %v", inc.Target, occ, inc.Counted, inc.Sent, inc.Found.Names)
		}
	}
	if v.Duplicates > 0 {
		fail("%d requests in progress beside another of their incident at the end of the storm", v.Duplicates)
	}
	if res.IncidentsFound != res.Incidents {
		fail("%d of %d incidents have no request", res.Incidents-res.IncidentsFound, res.Incidents)
	}
}

// caughtUp waits until both watches have seen every request and execution
// of the namespace as the API server now shows it.
func caughtUp(ctx context.Context, c *cluster, requests, executions *overlap.Watch) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var rrs v1alpha1.RemediationRequestList
		var wfes v1alpha1.WorkflowExecutionList
		if err := errors.Join(cli.List(ctx, &rrs, client.InNamespace(c.ns)), cli.List(ctx, &wfes, client.InNamespace(c.ns))); err == nil {
			var rs, ws []client.Object
			for i := range rrs.Items {
				rs = append(rs, &rrs.Items[i])
			}
			for i := range wfes.Items {
				ws = append(ws, &wfes.Items[i])
			}
			if requests.CaughtUp(rs) && executions.CaughtUp(ws) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("the etcd watches had not seen the final state of every request and execution within 30s: their verdict would be partial")
		case <-tick.C:
		}
	}
}

// checkCompleted fails for every request that ended other than Completed:
// the simulated executor never fails, so any other end means a request
// was cancelled, timed out or lost its execution.
func checkCompleted(ctx context.Context, c *cluster, fail func(string, ...any)) {
	var rrs v1alpha1.RemediationRequestList
	if err := cli.List(ctx, &rrs, client.InNamespace(c.ns)); err != nil {
		fail("list requests: %v", err)
		return
	}
	for _, rr := range rrs.Items {
		if p := rr.EffectivePhase(); p != v1alpha1.PhaseCompleted {
			fail("request %s ended %s, want Completed", rr.Name, p)
		}
	}
}

// createDirect creates directRequests requests on each of directTargets
// Nodes, with distinct fingerprints, interleaved by target.
func createDirect(t *testing.T, ns string) {
	t.Helper()
	base := time.Now()
	for i := range directRequests {
		for j := range directTargets {
			target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: fmt.Sprintf("shared-%d", j)}
			n := i*directTargets + j
			rr := directRequest(ns, target, i, base.Add(time.Duration(n)*time.Millisecond))
			if err := cli.Create(t.Context(), rr); err != nil {
				t.Fatalf("create %s: %v", rr.Name, err)
			}
		}
	}
}

// directRequest is request i on target, as a sender other than the
// gateway would create it.
func directRequest(ns string, target v1alpha1.TargetRef, i int, receivedAt time.Time) *v1alpha1.RemediationRequest {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", ns, target.LockKey(), i))
	fp := hex.EncodeToString(sum[:])
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("direct-%s-%02d", target.Name, i),
			Namespace: ns,
			Labels: map[string]string{
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp),
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(target),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  fp,
			SignalName:   "NodeNotReady",
			Severity:     "critical",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       target,
			SignalTarget: target,
			ReceivedAt:   metav1.NewMicroTime(receivedAt),
		},
	}
}
