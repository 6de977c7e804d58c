package v1alpha1_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

func TestRemediationPhaseIsTerminal(t *testing.T) {
	cases := map[v1alpha1.RemediationPhase]bool{
		"": false, v1alpha1.PhasePending: false, v1alpha1.PhaseBlocked: false, v1alpha1.PhaseExecuting: false,
		v1alpha1.PhaseCompleted: true, v1alpha1.PhaseFailed: true, v1alpha1.PhaseCancelled: true,
	}
	for phase, want := range cases {
		rr := &v1alpha1.RemediationRequest{Status: v1alpha1.RemediationRequestStatus{Phase: phase}}
		if got := rr.IsTerminal(); got != want {
			t.Errorf("phase %q: IsTerminal = %v, want %v", phase, got, want)
		}
	}
}

func TestWorkflowPhaseIsTerminal(t *testing.T) {
	cases := map[v1alpha1.WorkflowPhase]bool{
		"": false, v1alpha1.WorkflowPending: false, v1alpha1.WorkflowRunning: false,
		v1alpha1.WorkflowCompleted: true, v1alpha1.WorkflowFailed: true, v1alpha1.WorkflowCancelled: true,
	}
	for phase, want := range cases {
		w := &v1alpha1.WorkflowExecution{Status: v1alpha1.WorkflowExecutionStatus{Phase: phase}}
		if got := w.IsTerminal(); got != want {
			t.Errorf("phase %q: IsTerminal = %v, want %v", phase, got, want)
		}
	}
	if got := (&v1alpha1.WorkflowExecution{}).EffectivePhase(); got != v1alpha1.WorkflowPending {
		t.Errorf("empty phase: EffectivePhase = %q, want Pending", got)
	}
}

func TestEffectivePhaseDefaultsToPending(t *testing.T) {
	rr := &v1alpha1.RemediationRequest{}
	if got := rr.EffectivePhase(); got != v1alpha1.PhasePending {
		t.Fatalf("EffectivePhase of empty status = %q, want Pending", got)
	}
	rr.Status.Phase = v1alpha1.PhaseBlocked
	if got := rr.EffectivePhase(); got != v1alpha1.PhaseBlocked {
		t.Fatalf("EffectivePhase = %q, want Blocked", got)
	}
}

func TestEffectiveDeduplication(t *testing.T) {
	received := metav1.NowMicro()
	rr := &v1alpha1.RemediationRequest{Spec: v1alpha1.RemediationRequestSpec{SignalName: "HighLatency", ReceivedAt: received}}

	d := rr.EffectiveDeduplication()
	if d.OccurrenceCount != 1 || !d.FirstSeenAt.Equal(&received) || !d.LastSeenAt.Equal(&received) || len(d.SignalNames) != 1 || d.SignalNames[0] != "HighLatency" {
		t.Fatalf("no status: got %+v, want one occurrence of HighLatency at receivedAt", d)
	}

	// What the API server's defaults make of a request only created: the
	// count, nothing else. It means the same as no record at all.
	rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 1}
	d = rr.EffectiveDeduplication()
	if d.OccurrenceCount != 1 || !d.FirstSeenAt.Equal(&received) || !d.LastSeenAt.Equal(&received) || len(d.SignalNames) != 1 || d.SignalNames[0] != "HighLatency" {
		t.Fatalf("defaulted record: got %+v, want one occurrence of HighLatency at receivedAt", d)
	}

	rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{OccurrenceCount: 5, SignalNames: []string{"A"}}
	d = rr.EffectiveDeduplication()
	if d.OccurrenceCount != 5 {
		t.Fatalf("count = %d, want 5", d.OccurrenceCount)
	}
	d.SignalNames[0] = "changed"
	if rr.Status.Deduplication.SignalNames[0] != "A" {
		t.Fatal("EffectiveDeduplication returned an alias of the status, not a copy")
	}

	// A count below 1 can only come from a writer bypassing the schema; readers still never see it.
	rr.Status.Deduplication.OccurrenceCount = 0
	if got := rr.EffectiveDeduplication().OccurrenceCount; got != 1 {
		t.Fatalf("count with zero in status = %d, want 1", got)
	}
}

func TestTargetLockKey(t *testing.T) {
	cases := []struct {
		target v1alpha1.TargetRef
		key    string
	}{
		{v1alpha1.TargetRef{Cluster: "prod", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}, "prod/apps/Deployment/shop/web"},
		{v1alpha1.TargetRef{Cluster: "prod", APIVersion: "apps/v2", Kind: "Deployment", Namespace: "shop", Name: "web"}, "prod/apps/Deployment/shop/web"},
		{v1alpha1.TargetRef{Cluster: "prod", APIVersion: "v1", Kind: "Node", Name: "worker-1"}, "prod//Node//worker-1"},
	}
	for _, c := range cases {
		if got := c.target.LockKey(); got != c.key {
			t.Errorf("%+v: LockKey = %q, want %q", c.target, got, c.key)
		}
	}
}

func TestLabelValuesAreValid(t *testing.T) {
	long := v1alpha1.TargetRef{Cluster: "prod", APIVersion: "v1", Kind: "Pod", Namespace: strings.Repeat("n", 63), Name: strings.Repeat("p", 253)}
	fp := strings.Repeat("ab", 32)
	for _, v := range []string{v1alpha1.TargetLabelValue(long), v1alpha1.FingerprintLabelValue(fp)} {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label value %q invalid: %v", v, errs)
		}
		if len(v) != 40 {
			t.Errorf("label value %q has length %d, want 40", v, len(v))
		}
	}
	other := long
	other.Name = "q"
	if v1alpha1.TargetLabelValue(long) == v1alpha1.TargetLabelValue(other) {
		t.Error("different targets share a target label value")
	}
}
