package overlap

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

// wfeOn is an execution on target t in phase; the rest is left empty.
func wfeOn(name string, t v1alpha1.TargetRef, phase v1alpha1.WorkflowPhase) *v1alpha1.WorkflowExecution {
	return &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.WorkflowExecutionSpec{Target: t},
		Status:     v1alpha1.WorkflowExecutionStatus{Phase: phase},
	}
}

// rrOf is a request of fingerprint fp in phase.
func rrOf(name, fp string, phase v1alpha1.RemediationPhase) *v1alpha1.RemediationRequest {
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.RemediationRequestSpec{Fingerprint: fp},
		Status:     v1alpha1.RemediationRequestStatus{Phase: phase},
	}
}

// change is one change a source feeds a Replay.
type change struct {
	typ watch.EventType
	obj client.Object
}

// epoch starts every fake clock.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newReplay is NewReplay for arguments known to be valid.
func newReplay(t *testing.T, what string, classify Classifier, clk clock.PassiveClock) *Replay {
	t.Helper()
	r, err := NewReplay(what, classify, clk)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReplayExecutions(t *testing.T) {
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
			rp := newReplay(t, "executions", Executions, clocktesting.NewFakePassiveClock(epoch))
			for _, c := range tc.changes {
				rp.Apply(c.typ, c.obj)
			}
			key1, key2 := node1.LockKey(), node2.LockKey()
			r := rp.Result([]string{key1, key2, "never-seen"})
			if r.MaxActive[key1] != tc.wantMax1 {
				t.Errorf("MaxActive[node1] = %d, want %d", r.MaxActive[key1], tc.wantMax1)
			}
			if r.MaxActive["never-seen"] != 0 {
				t.Errorf("MaxActive of a target never seen = %d, want 0", r.MaxActive["never-seen"])
			}
			if r.MaxActiveAny != tc.wantMax1 {
				t.Errorf("MaxActiveAny = %d, want %d", r.MaxActiveAny, tc.wantMax1)
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

func TestReplayRequests(t *testing.T) {
	rp := newReplay(t, "requests", Requests, clocktesting.NewFakePassiveClock(epoch))
	// Generation 2 starts after generation 1 finished: no violation.
	rp.Apply(watch.Added, rrOf("rr-x-1", "x", ""))
	rp.Apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseExecuting))
	rp.Apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseCompleted))
	rp.Apply(watch.Added, rrOf("rr-x-2", "x", ""))
	// Two in progress for y: a duplicate.
	rp.Apply(watch.Added, rrOf("rr-y-1", "y", v1alpha1.PhaseBlocked))
	rp.Apply(watch.Added, rrOf("rr-y-dup", "y", ""))
	r := rp.Result([]string{"x", "y"})
	if r.MaxActive["x"] != 1 || r.MaxActive["y"] != 2 {
		t.Errorf("MaxActive = %v, want x:1 y:2", r.MaxActive)
	}
	if len(r.Violations) != 1 || !strings.HasPrefix(r.Violations[0], "y: 2 requests active at once") {
		t.Errorf("violations = %q, want one about y", r.Violations)
	}
}

// MaxActiveAny covers every group of the namespace, including those not
// asked for, and is the peak, not the current count.
func TestReplayMaxActiveAny(t *testing.T) {
	rp := newReplay(t, "requests", Requests, clocktesting.NewFakePassiveClock(epoch))
	if r := rp.Result(nil); r.MaxActiveAny != 0 || len(r.MaxActive) != 0 {
		t.Fatalf("empty watch: MaxActiveAny = %d, MaxActive = %v; want 0 and empty", r.MaxActiveAny, r.MaxActive)
	}
	rp.Apply(watch.Added, rrOf("x-1", "x", v1alpha1.PhaseExecuting))
	rp.Apply(watch.Added, rrOf("y-1", "y", v1alpha1.PhaseExecuting))
	rp.Apply(watch.Added, rrOf("y-2", "y", v1alpha1.PhaseBlocked))
	rp.Apply(watch.Added, rrOf("y-3", "y", ""))
	// Three active in y at once; then they finish, and x gets a second.
	rp.Apply(watch.Modified, rrOf("y-1", "y", v1alpha1.PhaseCompleted))
	rp.Apply(watch.Deleted, rrOf("y-2", "y", v1alpha1.PhaseBlocked))
	rp.Apply(watch.Modified, rrOf("y-3", "y", v1alpha1.PhaseFailed))
	rp.Apply(watch.Added, rrOf("x-2", "x", ""))

	r := rp.Result([]string{"x"})
	if r.MaxActiveAny != 3 {
		t.Errorf("MaxActiveAny = %d, want 3 (group y, not asked for)", r.MaxActiveAny)
	}
	if len(r.MaxActive) != 1 || r.MaxActive["x"] != 2 {
		t.Errorf("MaxActive = %v, want only x:2", r.MaxActive)
	}
	// y-2 (2 active), y-3 (3), y-1 finishing (still 2), x-2 (2).
	if len(r.Violations) != 4 {
		t.Errorf("violations = %q, want 4", r.Violations)
	}
}

func TestReplayAddedAfter(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(epoch)
	rp := newReplay(t, "executions", Executions, clk)
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	other := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "m"}

	// Present before the watch started: never reported as Added.
	rp.ApplyListed(wfeOn("listed", node, v1alpha1.WorkflowRunning))
	rp.Apply(watch.Modified, wfeOn("listed", node, v1alpha1.WorkflowCompleted))

	t0 := epoch
	clk.SetTime(t0.Add(time.Second))
	rp.Apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowPending))
	clk.SetTime(t0.Add(2 * time.Second))
	rp.Apply(watch.Added, wfeOn("c", other, v1alpha1.WorkflowPending))
	rp.Apply(watch.Added, wfeOn("b", other, v1alpha1.WorkflowPending))
	rp.Apply(watch.Added, rrOf("not-an-execution", "fp", ""))
	clk.SetTime(t0.Add(3 * time.Second))
	// Later changes of an Added object do not move its time; nor does an
	// Added delivered again under the same name.
	rp.Apply(watch.Modified, wfeOn("a", node, v1alpha1.WorkflowCompleted))
	rp.Apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowPending))

	want := []Added{
		{Name: "a", Group: node.LockKey(), At: t0.Add(time.Second)},
		{Name: "b", Group: other.LockKey(), At: t0.Add(2 * time.Second)},
		{Name: "c", Group: other.LockKey(), At: t0.Add(2 * time.Second)},
	}
	cases := []struct {
		after time.Time
		want  []Added
	}{
		{after: t0.Add(-time.Hour), want: want},
		{after: t0, want: want},
		// Strictly after: an object received at t is not after t.
		{after: t0.Add(time.Second), want: want[1:]},
		{after: t0.Add(1500 * time.Millisecond), want: want[1:]},
		{after: t0.Add(2 * time.Second), want: nil},
	}
	for _, tc := range cases {
		got := rp.AddedAfter(tc.after)
		if !equalAdded(got, tc.want) {
			t.Errorf("AddedAfter(t0+%v) = %+v, want %+v", tc.after.Sub(t0), got, tc.want)
		}
	}
}

func equalAdded(a, b []Added) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Group != b[i].Group || !a[i].At.Equal(b[i].At) {
			return false
		}
	}
	return true
}

func TestReplayCaughtUp(t *testing.T) {
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	rp := newReplay(t, "executions", Executions, clocktesting.NewFakePassiveClock(epoch))
	listed := []client.Object{wfeOn("a", node, v1alpha1.WorkflowCompleted), wfeOn("b", node, v1alpha1.WorkflowCompleted)}
	if rp.CaughtUp(listed) {
		t.Fatal("CaughtUp before any change was seen")
	}
	rp.Apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowRunning))
	rp.Apply(watch.Modified, wfeOn("a", node, v1alpha1.WorkflowCompleted))
	rp.Apply(watch.Added, wfeOn("b", node, v1alpha1.WorkflowRunning))
	if rp.CaughtUp(listed) {
		t.Fatal("CaughtUp while b was last seen Running and is listed Completed")
	}
	rp.Apply(watch.Modified, wfeOn("b", node, v1alpha1.WorkflowCompleted))
	if !rp.CaughtUp(listed) {
		t.Fatal("not CaughtUp after every listed state was seen")
	}
	if !rp.CaughtUp(nil) {
		t.Fatal("not CaughtUp with nothing to see")
	}
}

// A deletion known only by name frees the object from the group it was
// last seen in; a name never seen changes nothing.
func TestReplayApplyDelete(t *testing.T) {
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	key := node.LockKey()
	rp := newReplay(t, "executions", Executions, clocktesting.NewFakePassiveClock(epoch))
	rp.ApplyListed(wfeOn("a", node, v1alpha1.WorkflowRunning))
	rp.ApplyDelete("never-seen")
	rp.ApplyDelete("a")
	rp.Apply(watch.Added, wfeOn("b", node, v1alpha1.WorkflowRunning))
	if r := rp.Result([]string{key}); r.MaxActive[key] != 1 || len(r.Violations) != 0 {
		t.Fatalf("after a was deleted by name and b started: %+v, want 1 active at most and no violation", r)
	}
	// The deleted object is seen as not active: a list without it, or a
	// stale copy of it that is not active, is caught up.
	if rp.CaughtUp([]client.Object{wfeOn("a", node, v1alpha1.WorkflowRunning)}) {
		t.Error("CaughtUp with a Running copy of a deleted object")
	}
	if !rp.CaughtUp([]client.Object{wfeOn("a", node, v1alpha1.WorkflowCompleted), wfeOn("b", node, v1alpha1.WorkflowRunning)}) {
		t.Error("not CaughtUp after a's deletion and b's creation")
	}
	rp.Apply(watch.Added, wfeOn("c", node, v1alpha1.WorkflowRunning))
	rp.ApplyDelete("b")
	rp.ApplyDelete("c")
	rp.Apply(watch.Added, wfeOn("d", node, v1alpha1.WorkflowRunning))
	r := rp.Result([]string{key})
	if r.MaxActive[key] != 2 || len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "b, c") {
		t.Errorf("result = %+v, want b and c active at once, once", r)
	}
}

// An object whose group changes leaves the old group: it is counted in
// one group at a time.
func TestReplayGroupChange(t *testing.T) {
	rp := newReplay(t, "requests", Requests, clocktesting.NewFakePassiveClock(epoch))
	rp.Apply(watch.Added, rrOf("r1", "x", v1alpha1.PhaseExecuting))
	rp.Apply(watch.Modified, rrOf("r1", "y", v1alpha1.PhaseExecuting))
	rp.Apply(watch.Added, rrOf("r2", "x", v1alpha1.PhaseExecuting))
	rp.ApplyDelete("r1")
	rp.Apply(watch.Added, rrOf("r3", "y", v1alpha1.PhaseExecuting))
	r := rp.Result([]string{"x", "y"})
	if r.MaxActive["x"] != 1 || r.MaxActive["y"] != 1 || len(r.Violations) != 0 {
		t.Errorf("result = %+v, want at most one active in x and in y, no violation", r)
	}
}

// Bookmarks and errors are not changes.
func TestReplayIgnoresOtherEventTypes(t *testing.T) {
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	rp := newReplay(t, "executions", Executions, clocktesting.NewFakePassiveClock(epoch))
	rp.Apply(watch.Bookmark, wfeOn("a", node, v1alpha1.WorkflowRunning))
	rp.Apply(watch.Error, wfeOn("b", node, v1alpha1.WorkflowRunning))
	if r := rp.Result(nil); r.MaxActiveAny != 0 || len(rp.AddedAfter(time.Time{})) != 0 {
		t.Errorf("result = %+v after a bookmark and an error, want nothing recorded", r)
	}
}

func TestNewReplayValidates(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(epoch)
	cases := []struct {
		name     string
		what     string
		classify Classifier
		clk      clock.PassiveClock
		want     string
	}{
		{"no name", "", Executions, clk, "empty name"},
		{"no classifier", "executions", nil, clk, "nil classifier"},
		{"no clock", "executions", Executions, nil, "nil clock"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rp, err := NewReplay(tc.what, tc.classify, tc.clk)
			if err == nil || rp != nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewReplay = %v, %v; want nil and an error saying %q", rp, err, tc.want)
			}
		})
	}
}
