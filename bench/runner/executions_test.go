package runner

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func wfe(name, node string, seq int64, phase v1alpha1.WorkflowPhase) *v1alpha1.WorkflowExecution {
	return &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:   v1alpha1.TargetRef{Cluster: "c", APIVersion: "v1", Kind: "Node", Name: node},
			Sequence: seq,
		},
		Status: v1alpha1.WorkflowExecutionStatus{Phase: phase},
	}
}

func all(*v1alpha1.WorkflowExecution) bool { return true }

func TestReplayExecutionsHandoffs(t *testing.T) {
	changes := []change{
		{at: at(0), obj: wfe("a1", "a", 1, "")},
		{at: at(5), obj: wfe("b1", "b", 1, "")},
		{at: at(10), obj: wfe("a1", "a", 1, v1alpha1.WorkflowRunning)},
		{at: at(210), obj: wfe("a1", "a", 1, v1alpha1.WorkflowCompleted)},
		{at: at(230), obj: wfe("a2", "a", 2, "")},
		{at: at(240), obj: wfe("b1", "b", 1, v1alpha1.WorkflowFailed)},
		{at: at(300), obj: wfe("b2", "b", 2, "")},
		// A later state of an ended execution does not move its end.
		{at: at(400), obj: wfe("a1", "a", 1, v1alpha1.WorkflowCompleted)},
		{at: at(450), obj: wfe("a2", "a", 2, v1alpha1.WorkflowCompleted)},
		// Deletion ends an execution too.
		{at: at(460), deleted: true, obj: wfe("b2", "b", 2, v1alpha1.WorkflowRunning)},
		{at: at(475), obj: wfe("b3", "b", 3, "")},
	}
	r := replayExecutions(changes, all)
	if r.executions != 5 || r.maxActive != 1 || r.duplicates != 0 || len(r.violations) != 0 {
		t.Errorf("replay %+v, want 5 executions, one active at a time", r)
	}
	// Sorted by target: a1->a2 20ms; b1->b2 60ms, b2->b3 15ms.
	want := []time.Duration{20 * time.Millisecond, 60 * time.Millisecond, 15 * time.Millisecond}
	if len(r.handoffs) != len(want) {
		t.Fatalf("hand-offs %v, want %v", r.handoffs, want)
	}
	for i := range want {
		if r.handoffs[i] != want[i] {
			t.Errorf("hand-off %d = %v, want %v", i, r.handoffs[i], want[i])
		}
	}
}

func TestReplayExecutionsFindsOverlap(t *testing.T) {
	changes := []change{
		{at: at(0), obj: wfe("a1", "a", 1, v1alpha1.WorkflowRunning)},
		{at: at(1), obj: wfe("a2", "a", 2, "")},
		{at: at(2), obj: wfe("a1", "a", 1, v1alpha1.WorkflowCompleted)},
		{at: at(3), obj: wfe("x1", "x", 1, "")},
	}
	r := replayExecutions(changes, func(w *v1alpha1.WorkflowExecution) bool { return w.Spec.Target.Name != "x" })
	if r.maxActive != 2 || r.duplicates != 1 || len(r.violations) != 1 {
		t.Fatalf("replay %+v, want an overlap of 2 on one target", r)
	}
	if !strings.Contains(r.violations[0], "2 executions active at once after a change of a2: a1, a2") {
		t.Errorf("violation %q", r.violations[0])
	}
	// An overlapping successor has no hand-off; x is out of scope.
	if len(r.handoffs) != 0 || r.executions != 2 {
		t.Errorf("hand-offs %v, executions %d; want none and 2", r.handoffs, r.executions)
	}
}

func TestReplayRequests(t *testing.T) {
	rr := func(name string, phase v1alpha1.RemediationPhase) *v1alpha1.RemediationRequest {
		return &v1alpha1.RemediationRequest{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1alpha1.RemediationRequestStatus{Phase: phase}}
	}
	createdAt := map[string]time.Time{"r1": at(0), "r2": at(10), "r3": at(20)}
	changes := []change{
		{at: at(1), obj: rr("r1", v1alpha1.PhasePending)},
		{at: at(300), obj: rr("r1", v1alpha1.PhaseCompleted)},
		{at: at(310), obj: rr("other", v1alpha1.PhaseCompleted)},
		{at: at(500), obj: rr("r2", v1alpha1.PhaseFailed)},
		{at: at(900), obj: rr("r1", v1alpha1.PhaseCompleted)},
	}
	r := replayRequests(changes, createdAt)
	if r.completed != 1 || r.failed != 1 || r.unfinished != 1 {
		t.Errorf("completed %d failed %d unfinished %d, want 1 1 1", r.completed, r.failed, r.unfinished)
	}
	if len(r.latencies) != 2 || r.latencies[0] != 300*time.Millisecond || r.latencies[1] != 490*time.Millisecond {
		t.Errorf("latencies %v, want [300ms 490ms]", r.latencies)
	}
	if !r.lastEnd.Equal(at(500)) {
		t.Errorf("last end %v, want %v", r.lastEnd, at(500))
	}
}

func TestNewRequestIsLabelledAsTheGatewayDoes(t *testing.T) {
	tr := v1alpha1.TargetRef{Cluster: "bench-r1", APIVersion: "v1", Kind: "Node", Name: "node-0"}
	a := newRequest("s4-r1-000", tr, t0)
	b := newRequest("s4-r1-001", tr, t0)
	if a.Spec.Fingerprint == b.Spec.Fingerprint || len(a.Spec.Fingerprint) != 64 {
		t.Errorf("fingerprints %q and %q: want distinct 64-digit hex", a.Spec.Fingerprint, b.Spec.Fingerprint)
	}
	if a.Labels[v1alpha1.LabelTarget] != v1alpha1.TargetLabelValue(tr) ||
		a.Labels[v1alpha1.LabelFingerprint] != v1alpha1.FingerprintLabelValue(a.Spec.Fingerprint) {
		t.Errorf("labels %v", a.Labels)
	}
	if a.Namespace != orchestrationNamespace {
		t.Errorf("namespace %q", a.Namespace)
	}
}
