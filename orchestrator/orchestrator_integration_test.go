//go:build integration

package orchestrator_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/orchestrator"
)

// Ten requests on one target, three replicas: at every moment at most one
// non-terminal execution (checked by the watcher on every change), the
// other nine Blocked/ResourceBusy while the first runs, and one execution
// after another, in receivedAt order, until all ten are Completed.
func TestIntegrationTenRequestsOneTarget(t *testing.T) {
	tgt := target(newCluster(), "worker-1")
	label := v1alpha1.TargetLabelValue(tgt)
	ctx := ctxTimeout(t, 3*time.Minute)
	const n = 10

	// Arrival order is the index; names and creation order are shuffled,
	// so that neither can pass for arrival order.
	base := time.Now().Add(-time.Minute)
	names := rand.Perm(n)
	rrs := make([]*v1alpha1.RemediationRequest, n)
	for i := range n {
		rrs[i] = newRequest(fmt.Sprintf("ten-%02d", names[i]), tgt, base.Add(time.Duration(i)*time.Millisecond))
	}

	// The executor holds each execution until the target is quiet: its
	// request Executing and every other unfinished request Blocked/
	// ResourceBusy by it. Then it completes it. So the hand-off figure is
	// the time from a completion to the next creation on a quiet target,
	// as with real executions that take a while.
	var firstBlocked atomic.Bool
	wt := startWatcher(t, func(w v1alpha1.WorkflowExecution) {
		if w.Labels[v1alpha1.LabelTarget] != label {
			return
		}
		err := poll(ctx, time.Minute, func() (bool, error) {
			items, err := requestsOf(ctx, tgt)
			if err != nil {
				return false, err
			}
			waiting := 0
			for i := range items {
				rr := &items[i]
				switch {
				case rr.Name == w.Spec.RemediationRequestRef.Name:
					if rr.Status.Phase != v1alpha1.PhaseExecuting {
						return false, nil
					}
				case rr.IsTerminal():
				case blockedBy(rr, w.Name):
					waiting++
				default:
					return false, nil
				}
			}
			if w.Spec.Sequence == 1 && waiting != n-1 {
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			t.Errorf("requests never settled around %s: %v", w.Name, err)
		} else if w.Spec.Sequence == 1 {
			firstBlocked.Store(true)
		}
		if err := setExecutionPhase(ctx, w.Name, v1alpha1.WorkflowCompleted); err != nil {
			t.Errorf("complete %s: %v", w.Name, err)
		}
	})

	apiBefore, adminBefore := apiServerRequests(t), adminCalls.snapshot()
	for _, i := range rand.Perm(n) {
		createRequest(t, rrs[i])
	}
	var replicas []*replica
	for i := range 3 {
		replicas = append(replicas, startReplica(t, fmt.Sprintf("ten-orch-%d", i), replicaConfig{}))
	}

	waitFor(t, 2*time.Minute, "all ten requests Completed", func() (bool, error) {
		items, err := requestsOf(ctx, tgt)
		if err != nil {
			return false, err
		}
		completed := 0
		for i := range items {
			if items[i].Status.Phase == v1alpha1.PhaseCompleted {
				completed++
			}
		}
		return completed == n, nil
	})
	var spent calls
	for _, r := range replicas {
		spent = spent.add(r.calls.snapshot())
	}
	apiAfter, adminAfter := apiServerRequests(t), adminCalls.snapshot()
	t.Logf("reconcile outcomes over the 3 replicas: %s", outcomes(t, replicas))

	wfes, err := executionsOf(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(wfes, func(i, j int) bool { return wfes[i].Spec.Sequence < wfes[j].Spec.Sequence })
	if len(wfes) != n {
		t.Fatalf("%d executions, want %d", len(wfes), n)
	}
	for i, w := range wfes {
		if w.Spec.Sequence != int64(i+1) || w.Name != orchestrator.ExecutionName(tgt, int64(i+1)) {
			t.Errorf("execution %d: %s sequence %d", i, w.Name, w.Spec.Sequence)
		}
		if w.Spec.RemediationRequestRef.Name != rrs[i].Name {
			t.Errorf("execution %d went to %s, want %s (arrival order)", i+1, w.Spec.RemediationRequestRef.Name, rrs[i].Name)
		}
		if w.Spec.FencingToken == "" {
			t.Errorf("execution %s has no fencing token", w.Name)
		}
	}
	if !firstBlocked.Load() {
		t.Error("the nine were not all Blocked while the first ran")
	}
	if m := wt.maxActive(label); m != 1 {
		t.Errorf("at most %d executions were active at once, want exactly 1", m)
	}
	for _, rr := range rrs {
		got, err := getRequest(ctx, rr.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Finalizers) != 0 {
			t.Errorf("request %s kept finalizers %v after completing", rr.Name, got.Finalizers)
		}
	}

	ds := handoffs(wt.eventsOf(label))
	t.Logf("completion -> next creation on one quiet target, %d hand-offs: p50 %v, p95 %v, max %v",
		len(ds), percentile(ds, 50), percentile(ds, 95), percentile(ds, 100))
	t.Logf("API requests by the 3 replicas (managers, informers, locks, events; startup included): %d, %.1f per request: %s",
		spent.total(), float64(spent.total())/n, spent)
	server := apiAfter - apiBefore - float64(adminAfter.total()-adminBefore.total()) - 1
	t.Logf("apiserver_request_total delta minus the test's own requests: %.0f, %.1f per request (watches count when they end)",
		server, server/n)
}

// Fifty requests over five targets, created while three replicas run: the
// same invariant per target, every request gets exactly one execution and
// completes.
func TestIntegrationFiftyRequestsFiveTargets(t *testing.T) {
	ctx := ctxTimeout(t, 4*time.Minute)
	const targets, perTarget = 5, 10
	var tgts []v1alpha1.TargetRef
	ours := map[string]bool{}
	cluster := newCluster()
	for i := range targets {
		tgt := target(cluster, fmt.Sprintf("fifty-%d", i))
		tgts = append(tgts, tgt)
		ours[v1alpha1.TargetLabelValue(tgt)] = true
	}
	wt := startWatcher(t, func(w v1alpha1.WorkflowExecution) {
		if !ours[w.Labels[v1alpha1.LabelTarget]] {
			return
		}
		// The executor runs each execution in a goroutine of its own, as
		// executions on different targets run independently.
		go func() {
			if err := setExecutionPhase(ctx, w.Name, v1alpha1.WorkflowRunning); err != nil {
				t.Errorf("run %s: %v", w.Name, err)
				return
			}
			if err := setExecutionPhase(ctx, w.Name, v1alpha1.WorkflowCompleted); err != nil {
				t.Errorf("complete %s: %v", w.Name, err)
			}
		}()
	})
	var replicas []*replica
	for i := range 3 {
		replicas = append(replicas, startReplica(t, fmt.Sprintf("fifty-orch-%d", i), replicaConfig{}))
	}

	var rrs []*v1alpha1.RemediationRequest
	base := time.Now()
	for i := range targets * perTarget {
		rrs = append(rrs, newRequest(fmt.Sprintf("fifty-%02d", i), tgts[i%targets], base.Add(time.Duration(i)*time.Millisecond)))
	}
	rand.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
	var wg sync.WaitGroup
	for g := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(rrs); i += 5 {
				if err := admin.Create(ctx, rrs[i]); err != nil {
					t.Errorf("create %s: %v", rrs[i].Name, err)
				}
			}
		}()
	}
	wg.Wait()
	for _, rr := range rrs {
		createCleanup(t, rr)
	}

	waitFor(t, 3*time.Minute, "all fifty requests Completed", func() (bool, error) {
		completed := 0
		for _, tgt := range tgts {
			items, err := requestsOf(ctx, tgt)
			if err != nil {
				return false, err
			}
			for i := range items {
				if items[i].Status.Phase == v1alpha1.PhaseCompleted {
					completed++
				}
			}
		}
		return completed == targets*perTarget, nil
	})
	var spent calls
	for _, r := range replicas {
		spent = spent.add(r.calls.snapshot())
	}
	t.Logf("reconcile outcomes over the 3 replicas: %s", outcomes(t, replicas))

	var all []time.Duration
	for _, tgt := range tgts {
		label := v1alpha1.TargetLabelValue(tgt)
		if m := wt.maxActive(label); m != 1 {
			t.Errorf("target %s: at most %d executions active at once, want 1", tgt.Name, m)
		}
		wfes, err := executionsOf(ctx, tgt)
		if err != nil {
			t.Fatal(err)
		}
		if len(wfes) != perTarget {
			t.Errorf("target %s: %d executions, want %d", tgt.Name, len(wfes), perTarget)
		}
		perRequest := map[string]int{}
		seqs := map[int64]bool{}
		for _, w := range wfes {
			perRequest[w.Spec.RemediationRequestRef.Name]++
			seqs[w.Spec.Sequence] = true
		}
		for name, c := range perRequest {
			if c != 1 {
				t.Errorf("request %s got %d executions", name, c)
			}
		}
		for s := int64(1); s <= perTarget; s++ {
			if !seqs[s] {
				t.Errorf("target %s: no execution with sequence %d", tgt.Name, s)
			}
		}
		all = append(all, handoffs(wt.eventsOf(label))...)
	}
	t.Logf("completion -> next creation, executions completed at once, %d hand-offs over %d targets: p50 %v, p95 %v",
		len(all), targets, percentile(all, 50), percentile(all, 95))
	t.Logf("API requests by the 3 replicas: %d, %.1f per request: %s", spent.total(), float64(spent.total())/float64(len(rrs)), spent)
}

// createCleanup deletes rr at the end of the test, like createRequest for
// a request created by other means.
func createCleanup(t *testing.T, rr *v1alpha1.RemediationRequest) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cur, err := getRequest(ctx, rr.Name)
		if err != nil {
			return
		}
		if len(cur.Finalizers) > 0 {
			cur.Finalizers = nil
			_ = admin.Update(ctx, cur)
		}
		_ = admin.Delete(ctx, cur)
	})
}

// The pause: replica P decides to start generation 1 for request A and is
// frozen between its lock check and its create, long enough for its lease
// (2s) to expire. Replica Q takes the lease over and starts generation 1
// for request B, which arrived earlier but was created later. When P
// resumes, its create gets AlreadyExists; A ends Blocked on B's execution,
// and there is never a second active execution.
func TestIntegrationPausedReplicaIsFenced(t *testing.T) {
	tgt := target(newCluster(), "paused")
	label := v1alpha1.TargetLabelValue(tgt)
	ctx := ctxTimeout(t, 3*time.Minute)
	wt := startWatcher(t, nil)

	entered := make(chan struct{})
	release := make(chan struct{})
	var paused atomic.Bool
	pause := &pauser{}
	p := startReplica(t, "pause-p", replicaConfig{
		leaseDuration: 2 * time.Second,
		pause:         pause,
		options: func(o *orchestrator.Options) {
			// The duration form stretches the window past the lease; the
			// channel makes the test, not the clock, decide when P goes on.
			o.CheckToCreateDelay = 3 * time.Second
			o.BeforeCreate = func(ctx context.Context) {
				if paused.CompareAndSwap(false, true) {
					close(entered)
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
			}
		},
	})

	now := time.Now()
	a := newRequest("paused-a", tgt, now)
	createRequest(t, a)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("replica P never reached its create")
	}
	// P is frozen: its renewals stop reaching the API server.
	pause.paused.Store(true)

	b := newRequest("paused-b", tgt, now.Add(-time.Second))
	createRequest(t, b)
	q := startReplica(t, "pause-q", replicaConfig{})
	r := startReplica(t, "pause-r", replicaConfig{})

	gen1 := orchestrator.ExecutionName(tgt, 1)
	waitFor(t, time.Minute, "Q or R to start generation 1 for B", func() (bool, error) {
		got, err := getRequest(ctx, b.Name)
		if err != nil {
			return false, err
		}
		return got.Status.Phase == v1alpha1.PhaseExecuting && got.Status.WorkflowExecutionRef != nil &&
			got.Status.WorkflowExecutionRef.Name == gen1, nil
	})
	// P never released its Lease: whoever started B took it over after
	// observing it unchanged for P's lease duration.
	if n := q.metric(t, "orchestrator_lock_takeovers_total") + r.metric(t, "orchestrator_lock_takeovers_total"); n < 1 {
		t.Fatalf("no takeover of P's Lease (%v): the scenario did not play as designed", n)
	}

	// P resumes and sends its create.
	pause.paused.Store(false)
	close(release)
	waitFor(t, time.Minute, "P's create to be refused by the name", func() (bool, error) {
		return p.metric(t, "orchestrator_reconcile_total", "outcome", "fenced") >= 1, nil
	})
	waitFor(t, time.Minute, "A Blocked by generation 1", func() (bool, error) {
		got, err := getRequest(ctx, a.Name)
		if err != nil {
			return false, err
		}
		return blockedBy(got, gen1), nil
	})
	wfes, err := executionsOf(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if len(wfes) != 1 || wfes[0].Spec.RemediationRequestRef.Name != b.Name {
		t.Fatalf("executions after the pause: %+v, want only B's generation 1", wfes)
	}
	if m := wt.maxActive(label); m != 1 {
		t.Fatalf("%d executions active at once", m)
	}

	// The queue then runs on: B completes, A starts with generation 2.
	if err := setExecutionPhase(ctx, gen1, v1alpha1.WorkflowCompleted); err != nil {
		t.Fatal(err)
	}
	gen2 := orchestrator.ExecutionName(tgt, 2)
	waitFor(t, time.Minute, "A to start generation 2", func() (bool, error) {
		got, err := getRequest(ctx, a.Name)
		if err != nil {
			return false, err
		}
		return got.Status.Phase == v1alpha1.PhaseExecuting && got.Status.WorkflowExecutionRef.Name == gen2, nil
	})
	if err := setExecutionPhase(ctx, gen2, v1alpha1.WorkflowCompleted); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "both requests Completed", func() (bool, error) {
		ga, err := getRequest(ctx, a.Name)
		if err != nil {
			return false, err
		}
		gb, err := getRequest(ctx, b.Name)
		if err != nil {
			return false, err
		}
		return ga.Status.Phase == v1alpha1.PhaseCompleted && gb.Status.Phase == v1alpha1.PhaseCompleted, nil
	})
	if m := wt.maxActive(label); m != 1 {
		t.Fatalf("%d executions active at once", m)
	}
	t.Logf("P: fenced %v, lock losses %v; Q, R: takeovers %v, %v",
		p.metric(t, "orchestrator_reconcile_total", "outcome", "fenced"), p.metric(t, "orchestrator_lock_losses_total"),
		q.metric(t, "orchestrator_lock_takeovers_total"), r.metric(t, "orchestrator_lock_takeovers_total"))
}

// Deleting an Executing request cancels its execution (RequestDeleted),
// lets the request go, and starts the next request of the target.
func TestIntegrationDeleteExecutingRequest(t *testing.T) {
	tgt := target(newCluster(), "deleted")
	label := v1alpha1.TargetLabelValue(tgt)
	ctx := ctxTimeout(t, 2*time.Minute)
	wt := startWatcher(t, nil)
	for i := range 3 {
		startReplica(t, fmt.Sprintf("delete-orch-%d", i), replicaConfig{})
	}
	now := time.Now()
	a := newRequest("deleted-a", tgt, now)
	b := newRequest("deleted-b", tgt, now.Add(time.Millisecond))
	createRequest(t, a)
	gen1 := orchestrator.ExecutionName(tgt, 1)
	waitFor(t, time.Minute, "A Executing", func() (bool, error) {
		got, err := getRequest(ctx, a.Name)
		return err == nil && got.Status.Phase == v1alpha1.PhaseExecuting, err
	})
	createRequest(t, b)
	waitFor(t, time.Minute, "B Blocked by A's execution", func() (bool, error) {
		got, err := getRequest(ctx, b.Name)
		return err == nil && blockedBy(got, gen1), err
	})

	cur, err := getRequest(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "A gone", func() (bool, error) {
		_, err := getRequest(ctx, a.Name)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	wfes, err := executionsOf(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wfes {
		if w.Name == gen1 && (w.Status.Phase != v1alpha1.WorkflowCancelled || w.Status.Reason != orchestrator.ReasonRequestDeleted) {
			t.Fatalf("A's execution after the deletion: %+v, want Cancelled/RequestDeleted", w.Status)
		}
	}
	gen2 := orchestrator.ExecutionName(tgt, 2)
	waitFor(t, time.Minute, "B Executing generation 2", func() (bool, error) {
		got, err := getRequest(ctx, b.Name)
		return err == nil && got.Status.Phase == v1alpha1.PhaseExecuting && got.Status.WorkflowExecutionRef.Name == gen2, err
	})
	if err := setExecutionPhase(ctx, gen2, v1alpha1.WorkflowFailed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "B Failed", func() (bool, error) {
		got, err := getRequest(ctx, b.Name)
		return err == nil && got.Status.Phase == v1alpha1.PhaseFailed, err
	})
	if m := wt.maxActive(label); m != 1 {
		t.Fatalf("%d executions active at once", m)
	}
}
