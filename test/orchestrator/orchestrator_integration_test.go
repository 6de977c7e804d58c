//go:build integration

package orchestrator_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/lease"
)

const (
	// leaseDuration keeps the kill test to seconds: the dead holder's
	// Lease is taken over after it is seen unchanged this long.
	leaseDuration = 5 * time.Second
	// runDuration is how long the simulated executor keeps an execution
	// Running.
	runDuration = 200 * time.Millisecond

	orchestratorStartup = "orchestrator starting identity="
	executorStartup     = "executor (simulated) starting identity="
)

// system is one namespace with three orchestrator replicas, one simulated
// executor and a watcher on its WorkflowExecutions.
type system struct {
	namespace     string
	orchestrators []*proc
	executor      *proc
	watcher       *watcher
}

var namespaceSeq atomic.Int64

// newSystem starts everything in a fresh namespace and waits until every
// process is ready; extra[i] are additional flags of orchestrator i.
func newSystem(t *testing.T, extra ...[]string) *system {
	t.Helper()
	ns := fmt.Sprintf("e2e-%d", namespaceSeq.Add(1))
	if _, err := clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var specs []procSpec
	for i := range 3 {
		args := []string{"orchestrator", "--namespace", ns, "--lease-duration", leaseDuration.String()}
		if i < len(extra) {
			args = append(args, extra[i]...)
		}
		specs = append(specs, procSpec{name: fmt.Sprintf("orch-%d", i), args: args})
	}
	specs = append(specs, procSpec{name: "executor", args: []string{"executor", "--simulate", "--namespace", ns, "--duration", runDuration.String()}})
	ps := startReady(t, specs...)
	return &system{namespace: ns, orchestrators: ps[:3], executor: ps[3], watcher: startWatcher(t, ns)}
}

func (s *system) all() []*proc { return append(slices.Clone(s.orchestrators), s.executor) }

// stop sends SIGTERM to every process still running and checks each exits 0.
func (s *system) stop(t *testing.T) {
	t.Helper()
	for _, p := range s.orchestrators {
		if !p.exited() {
			p.stop(t, orchestratorStartup+p.name)
		}
	}
	s.executor.stop(t, executorStartup+s.executor.name)
}

func nodeTarget(name string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: name}
}

// createRequests creates perTarget requests for each target, interleaving
// the targets, one at a time, with strictly increasing receivedAt: the
// order the gateway would produce. Creation order equals receivedAt order,
// so whenever the orchestrator decides, the requests it can see are the
// earliest ones and the next to start is determined.
func createRequests(t *testing.T, ns string, targets []v1alpha1.TargetRef, perTarget int) []*v1alpha1.RemediationRequest {
	t.Helper()
	base := time.Now()
	var out []*v1alpha1.RemediationRequest
	for i := range perTarget {
		for _, target := range targets {
			n := len(out)
			sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", ns, target.LockKey(), i))
			fp := hex.EncodeToString(sum[:])
			rr := &v1alpha1.RemediationRequest{
				ObjectMeta: metav1.ObjectMeta{
					Name:      fmt.Sprintf("rr-%s-%02d", target.Name, i),
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
					// Microsecond precision survives the round trip; a
					// millisecond apart keeps them distinct.
					ReceivedAt: metav1.NewMicroTime(base.Add(time.Duration(n) * time.Millisecond)),
				},
			}
			if err := cli.Create(t.Context(), rr); err != nil {
				t.Fatalf("create %s: %v", rr.Name, err)
			}
			out = append(out, rr)
		}
	}
	return out
}

// waitCompleted polls until every request of the namespace is Completed.
// It fails at once on a request that ended otherwise or a replica in alive
// that died, and after timeout with a census of the phases.
func waitCompleted(t *testing.T, ns string, want int, timeout time.Duration, alive ...*proc) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		checkAlive(t, alive...)
		var list v1alpha1.RemediationRequestList
		if err := cli.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		census := map[v1alpha1.RemediationPhase]int{}
		for _, rr := range list.Items {
			p := rr.EffectivePhase()
			census[p]++
			if p.IsTerminal() && p != v1alpha1.PhaseCompleted {
				t.Fatalf("%s ended %s, want Completed (the executor never fails): %+v", rr.Name, p, rr.Status)
			}
		}
		if len(list.Items) == want && census[v1alpha1.PhaseCompleted] == want {
			return
		}
		select {
		case <-deadline.C:
			var pending []string
			for _, rr := range list.Items {
				if rr.EffectivePhase() != v1alpha1.PhaseCompleted {
					pending = append(pending, fmt.Sprintf("%s=%s(%s)", rr.Name, rr.EffectivePhase(), rr.Status.BlockedBy))
				}
			}
			t.Fatalf("after %v: %d requests, phases %v; not completed: %s", timeout, len(list.Items), census, strings.Join(pending, " "))
		case <-tick.C:
		}
	}
}

// verify checks the end state against the requests created, and the
// watcher's record of every moment in between.
func (s *system) verify(t *testing.T, rrs []*v1alpha1.RemediationRequest) {
	t.Helper()
	// The watcher may trail the request statuses by a few events.
	eventually(t, "the watcher to see every execution end", 30*time.Second, func() bool {
		return s.watcher.terminal() >= len(rrs)
	})
	s.watcher.check(t)

	var wfes v1alpha1.WorkflowExecutionList
	if err := cli.List(t.Context(), &wfes, client.InNamespace(s.namespace)); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.RemediationRequestList
	if err := cli.List(t.Context(), &got, client.InNamespace(s.namespace)); err != nil {
		t.Fatal(err)
	}
	requests := map[string]*v1alpha1.RemediationRequest{}
	for i := range got.Items {
		requests[got.Items[i].Name] = &got.Items[i]
	}

	// Exactly one execution per request, Completed, on the request's target.
	perRequest := map[string][]string{}
	byTarget := map[string][]*v1alpha1.WorkflowExecution{}
	for i := range wfes.Items {
		w := &wfes.Items[i]
		perRequest[w.Spec.RemediationRequestRef.Name] = append(perRequest[w.Spec.RemediationRequestRef.Name], w.Name)
		byTarget[w.Spec.Target.LockKey()] = append(byTarget[w.Spec.Target.LockKey()], w)
		if p := w.EffectivePhase(); p != v1alpha1.WorkflowCompleted {
			t.Errorf("execution %s is %s, want Completed", w.Name, p)
		}
		rr := requests[w.Spec.RemediationRequestRef.Name]
		if rr == nil {
			t.Errorf("execution %s serves %s, which is not one of the requests", w.Name, w.Spec.RemediationRequestRef.Name)
			continue
		}
		if string(rr.UID) != w.Spec.RemediationRequestRef.UID || rr.Spec.Target.LockKey() != w.Spec.Target.LockKey() {
			t.Errorf("execution %s: request %s uid %s target %s, want uid %s target %s", w.Name, rr.Name,
				w.Spec.RemediationRequestRef.UID, w.Spec.Target.LockKey(), rr.UID, rr.Spec.Target.LockKey())
		}
	}
	if len(wfes.Items) != len(rrs) {
		t.Errorf("%d executions for %d requests, want one each", len(wfes.Items), len(rrs))
	}
	for _, rr := range rrs {
		names := perRequest[rr.Name]
		if len(names) != 1 {
			t.Errorf("request %s has %d executions %v, want exactly 1", rr.Name, len(names), names)
			continue
		}
		if ref := requests[rr.Name].Status.WorkflowExecutionRef; ref == nil || ref.Name != names[0] {
			t.Errorf("request %s: status.workflowExecutionRef = %+v, want %s", rr.Name, ref, names[0])
		}
	}

	// Per target: executions in sequence order serve requests in receivedAt
	// order.
	for target, ws := range byTarget {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Spec.Sequence < ws[j].Spec.Sequence })
		var order []string
		for i, w := range ws {
			order = append(order, fmt.Sprintf("%d:%s", w.Spec.Sequence, w.Spec.RemediationRequestRef.Name))
			if i == 0 {
				continue
			}
			prev := ws[i-1]
			if w.Spec.Sequence == prev.Spec.Sequence {
				t.Errorf("%s: executions %s and %s share sequence %d", target, prev.Name, w.Name, w.Spec.Sequence)
			}
			a, b := requests[prev.Spec.RemediationRequestRef.Name], requests[w.Spec.RemediationRequestRef.Name]
			if a != nil && b != nil && !a.Spec.ReceivedAt.Before(&b.Spec.ReceivedAt) {
				t.Errorf("%s: sequence %d (%s, received %s) ran after sequence %d (%s, received %s): not in receivedAt order",
					target, w.Spec.Sequence, b.Name, b.Spec.ReceivedAt.Format(time.StampMicro),
					prev.Spec.Sequence, a.Name, a.Spec.ReceivedAt.Format(time.StampMicro))
			}
		}
		t.Logf("%s: %s", target, strings.Join(order, " "))
	}
	s.watcher.logHandoffs(t)
}

// TestTenRequestsOneTarget: three replicas, ten requests on Node/worker-1.
func TestTenRequestsOneTarget(t *testing.T) {
	s := newSystem(t)
	start := time.Now()
	rrs := createRequests(t, s.namespace, []v1alpha1.TargetRef{nodeTarget("worker-1")}, 10)
	waitCompleted(t, s.namespace, len(rrs), 60*time.Second, s.all()...)
	t.Logf("10 requests on one target completed in %v", time.Since(start).Round(time.Millisecond))
	s.verify(t, rrs)
	s.stop(t)
}

// TestFiftyRequestsFiveTargets: three replicas, ten requests on each of
// five nodes. The replicas' wall clocks disagree by up to four seconds;
// nothing may depend on them agreeing.
func TestFiftyRequestsFiveTargets(t *testing.T) {
	s := newSystem(t,
		[]string{"--test-clock-offset", "-2s"},
		nil,
		[]string{"--test-clock-offset", "2s"},
	)
	var targets []v1alpha1.TargetRef
	for i := 1; i <= 5; i++ {
		targets = append(targets, nodeTarget(fmt.Sprintf("worker-%d", i)))
	}
	start := time.Now()
	rrs := createRequests(t, s.namespace, targets, 10)
	waitCompleted(t, s.namespace, len(rrs), 90*time.Second, s.all()...)
	t.Logf("50 requests on five targets completed in %v", time.Since(start).Round(time.Millisecond))
	s.verify(t, rrs)
	s.stop(t)
}

// TestKillLockHolder kills, with SIGKILL, a replica that holds a target's
// lock while requests are still running. Its Lease stays behind; the other
// two must take it over after it is seen unchanged for the lease duration
// and finish every request, with the invariants intact.
//
// The replicas wait 300ms between their last lock check and the create of
// an execution, so a lock is held long enough to be seen. The victim is
// frozen (SIGSTOP) and its Lease checked to stay unchanged before the kill,
// so it is killed only while it certainly holds the lock: a frozen process
// cannot release.
func TestKillLockHolder(t *testing.T) {
	delay := []string{"--test-check-to-create-delay", "300ms"}
	s := newSystem(t, delay, delay, delay)
	targets := []v1alpha1.TargetRef{nodeTarget("worker-1"), nodeTarget("worker-2")}
	rrs := createRequests(t, s.namespace, targets, 10)

	// Mid-run: some executions have ended, most are still to come.
	eventually(t, "two executions to end", 60*time.Second, func() bool {
		checkAlive(t, s.all()...)
		return s.watcher.terminal() >= 2
	})

	victim, held := s.freezeHolder(t, 30*time.Second)
	key := held.Annotations[lease.AnnotationKey]
	victim.kill(t)
	killed := time.Now()
	t.Logf("killed %s (SIGKILL) while it held the lock of %s", victim.name, key)
	// The Lease outlives its dead holder: nobody released it.
	if cur, err := clientset.CoordinationV1().Leases(s.namespace).Get(t.Context(), held.Name, metav1.GetOptions{}); err != nil || cur.ResourceVersion != held.ResourceVersion {
		t.Fatalf("the dead holder's Lease %s changed or went right after the kill (err %v): the kill did not leave it behind", held.Name, err)
	}
	var exit *exec.ExitError
	if err := victim.exitErr(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("%s: exit %v, want killed by SIGKILL", victim.name, err)
	}

	var survivors []*proc
	for _, p := range s.orchestrators {
		if p != victim {
			survivors = append(survivors, p)
		}
	}
	waitCompleted(t, s.namespace, len(rrs), 120*time.Second, append(survivors, s.executor)...)
	t.Logf("all %d requests completed %v after the kill (lease duration %v)", len(rrs), time.Since(killed).Round(time.Millisecond), leaseDuration)
	if at, ok := s.watcher.createdAfter(key, killed); ok {
		t.Logf("kill -> next execution of %s created: %v (its Lease is taken over after %v unchanged)", key, at.Sub(killed).Round(time.Millisecond), leaseDuration)
	}
	s.verify(t, rrs)
	s.stop(t)
}

// settle is how long a frozen holder's Lease must stay unchanged before
// the holder is killed: a request the holder sent just before it stopped
// (a release in flight) reaches the API server well within it.
const settle = 200 * time.Millisecond

// freezeHolder finds an orchestrator replica that holds a target's lock,
// stops it with SIGSTOP and confirms from the API server that the Lease
// still names it and stays unchanged for settle. A replica whose Lease
// changed meanwhile is resumed and the search goes on. It returns the
// frozen replica and the Lease as last read.
func (s *system) freezeHolder(t *testing.T, timeout time.Duration) (*proc, *coordinationv1.Lease) {
	t.Helper()
	leases := clientset.CoordinationV1().Leases(s.namespace)
	selector := lease.LabelPrefix + "=ro-lock"
	holderOf := func(holder string) *proc {
		for _, p := range s.orchestrators {
			if strings.HasPrefix(holder, p.name+"/") {
				return p
			}
		}
		return nil
	}
	unchanged := func(l *coordinationv1.Lease) bool {
		cur, err := leases.Get(t.Context(), l.Name, metav1.GetOptions{})
		return err == nil && cur.ResourceVersion == l.ResourceVersion
	}
	var (
		victim *proc
		held   *coordinationv1.Lease
	)
	eventually(t, "an orchestrator to be seen holding a target lock", timeout, func() bool {
		checkAlive(t, s.all()...)
		list, err := leases.List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			l := &list.Items[i]
			p := holderOf(ptr.Deref(l.Spec.HolderIdentity, ""))
			if p == nil {
				continue
			}
			p.signal(syscall.SIGSTOP)
			if unchanged(l) {
				<-time.After(settle)
				if unchanged(l) {
					victim, held = p, l
					return true
				}
			}
			p.signal(syscall.SIGCONT)
		}
		return false
	})
	return victim, held
}

// eventually polls cond every 10ms until it holds, and fails the test if it
// does not within timeout.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// TestCommandRefusals: the commands refuse, with a non-zero exit and a
// message that says why, what they cannot do safely or at all.
func TestCommandRefusals(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"executor without --simulate", []string{"executor", "--kubeconfig", kubeconfigPath}, "only the simulated executor exists"},
		{"orchestrator without identity", []string{"orchestrator", "--kubeconfig", kubeconfigPath, "--identity", ""}, "--identity is empty"},
		{"executor with a failure rate above 1", []string{"executor", "--simulate", "--kubeconfig", kubeconfigPath, "--failure-rate", "1.5"}, "failure rate 1.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binaryPath, tt.args...)
			cmd.Env = append(cmd.Environ(), "POD_NAME=")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\noutput:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}
