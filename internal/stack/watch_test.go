package stack

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

func wfeOn(name string, t v1alpha1.TargetRef, phase v1alpha1.WorkflowPhase) *v1alpha1.WorkflowExecution {
	return &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.WorkflowExecutionSpec{Target: t},
		Status:     v1alpha1.WorkflowExecutionStatus{Phase: phase},
	}
}

func rrOf(name, fp string, phase v1alpha1.RemediationPhase) *v1alpha1.RemediationRequest {
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.RemediationRequestSpec{Fingerprint: fp},
		Status:     v1alpha1.RemediationRequestStatus{Phase: phase},
	}
}

type change struct {
	typ watch.EventType
	obj client.Object
}

func TestActiveWatchExecutions(t *testing.T) {
	node1 := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"}
	node2 := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-2"}
	// The same Node under another apiVersion is the same lock key.
	node1Again := node1
	node1Again.APIVersion = "v2"
	cases := []struct {
		name           string
		changes        []change
		wantMax1       int
		wantViolations int
	}{
		{
			name: "one after the other",
			changes: []change{
				{watch.Added, wfeOn("a", node1, "")},
				{watch.Modified, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Modified, wfeOn("a", node1, v1alpha1.WorkflowCompleted)},
				{watch.Added, wfeOn("b", node1, v1alpha1.WorkflowPending)},
				{watch.Modified, wfeOn("b", node1, v1alpha1.WorkflowFailed)},
			},
			wantMax1: 1,
		},
		{
			name: "other targets do not count",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Added, wfeOn("b", node2, v1alpha1.WorkflowRunning)},
			},
			wantMax1: 1,
		},
		{
			name: "two active on one target",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Added, wfeOn("b", node1, v1alpha1.WorkflowPending)},
				{watch.Modified, wfeOn("a", node1, v1alpha1.WorkflowCompleted)},
			},
			wantMax1:       2,
			wantViolations: 1,
		},
		{
			name: "same object under another apiVersion",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Added, wfeOn("b", node1Again, v1alpha1.WorkflowRunning)},
			},
			wantMax1:       2,
			wantViolations: 1,
		},
		{
			name: "a deletion ends an execution",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Deleted, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Added, wfeOn("b", node1, v1alpha1.WorkflowRunning)},
			},
			wantMax1: 1,
		},
		{
			name: "a cancelled execution frees the target",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Modified, wfeOn("a", node1, v1alpha1.WorkflowCancelled)},
				{watch.Added, wfeOn("b", node1, "")},
			},
			wantMax1: 1,
		},
		{
			name: "objects of another type are ignored",
			changes: []change{
				{watch.Added, wfeOn("a", node1, v1alpha1.WorkflowRunning)},
				{watch.Added, rrOf("b", "fp", v1alpha1.PhaseExecuting)},
			},
			wantMax1: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newActiveWatch("executions", classifyExecution)
			for _, c := range tc.changes {
				w.apply(c.typ, c.obj)
			}
			key1, key2 := node1.LockKey(), node2.LockKey()
			r := w.result([]string{key1, key2, "never-seen"})
			if r.MaxActive[key1] != tc.wantMax1 {
				t.Errorf("MaxActive[node1] = %d, want %d", r.MaxActive[key1], tc.wantMax1)
			}
			if r.MaxActive["never-seen"] != 0 {
				t.Errorf("MaxActive of a target never seen = %d, want 0", r.MaxActive["never-seen"])
			}
			if len(r.Violations) != tc.wantViolations {
				t.Errorf("violations = %q, want %d", r.Violations, tc.wantViolations)
			}
			for _, v := range r.Violations {
				if !strings.Contains(v, "2 executions active at once") || !strings.Contains(v, "a, b") {
					t.Errorf("violation %q does not say what was active", v)
				}
			}
		})
	}
}

func TestActiveWatchRequests(t *testing.T) {
	w := newActiveWatch("requests", classifyRequest)
	// Generation 2 starts after generation 1 finished: no violation.
	w.apply(watch.Added, rrOf("rr-x-1", "x", ""))
	w.apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseExecuting))
	w.apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseCompleted))
	w.apply(watch.Added, rrOf("rr-x-2", "x", ""))
	// Two in progress for y: a duplicate.
	w.apply(watch.Added, rrOf("rr-y-1", "y", v1alpha1.PhaseBlocked))
	w.apply(watch.Added, rrOf("rr-y-dup", "y", ""))
	r := w.result([]string{"x", "y"})
	if r.MaxActive["x"] != 1 || r.MaxActive["y"] != 2 {
		t.Errorf("MaxActive = %v, want x:1 y:2", r.MaxActive)
	}
	if len(r.Violations) != 1 || !strings.HasPrefix(r.Violations[0], "y: 2 requests active at once") {
		t.Errorf("violations = %q, want one about y", r.Violations)
	}
}

func TestActiveWatchCaughtUp(t *testing.T) {
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	w := newActiveWatch("executions", classifyExecution)
	listed := []client.Object{wfeOn("a", node, v1alpha1.WorkflowCompleted), wfeOn("b", node, v1alpha1.WorkflowCompleted)}
	if w.caughtUp(listed) {
		t.Fatal("caughtUp before any change was seen")
	}
	w.apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowRunning))
	w.apply(watch.Modified, wfeOn("a", node, v1alpha1.WorkflowCompleted))
	w.apply(watch.Added, wfeOn("b", node, v1alpha1.WorkflowRunning))
	if w.caughtUp(listed) {
		t.Fatal("caughtUp while b was last seen Running and is listed Completed")
	}
	w.apply(watch.Modified, wfeOn("b", node, v1alpha1.WorkflowCompleted))
	if !w.caughtUp(listed) {
		t.Fatal("not caughtUp after every listed state was seen")
	}
	if !w.caughtUp(nil) {
		t.Fatal("not caughtUp with nothing to see")
	}
}
