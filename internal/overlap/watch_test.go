package overlap

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

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

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestWatchExecutions(t *testing.T) {
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
			w := newWatch("executions", Executions, clocktesting.NewFakePassiveClock(epoch))
			for _, c := range tc.changes {
				w.apply(c.typ, c.obj)
			}
			key1, key2 := node1.LockKey(), node2.LockKey()
			r := w.Result([]string{key1, key2, "never-seen"})
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

func TestWatchRequests(t *testing.T) {
	w := newWatch("requests", Requests, clocktesting.NewFakePassiveClock(epoch))
	// Generation 2 starts after generation 1 finished: no violation.
	w.apply(watch.Added, rrOf("rr-x-1", "x", ""))
	w.apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseExecuting))
	w.apply(watch.Modified, rrOf("rr-x-1", "x", v1alpha1.PhaseCompleted))
	w.apply(watch.Added, rrOf("rr-x-2", "x", ""))
	// Two in progress for y: a duplicate.
	w.apply(watch.Added, rrOf("rr-y-1", "y", v1alpha1.PhaseBlocked))
	w.apply(watch.Added, rrOf("rr-y-dup", "y", ""))
	r := w.Result([]string{"x", "y"})
	if r.MaxActive["x"] != 1 || r.MaxActive["y"] != 2 {
		t.Errorf("MaxActive = %v, want x:1 y:2", r.MaxActive)
	}
	if len(r.Violations) != 1 || !strings.HasPrefix(r.Violations[0], "y: 2 requests active at once") {
		t.Errorf("violations = %q, want one about y", r.Violations)
	}
}

// MaxActiveAny covers every group of the namespace, including those not
// asked for, and is the peak, not the current count.
func TestWatchMaxActiveAny(t *testing.T) {
	w := newWatch("requests", Requests, clocktesting.NewFakePassiveClock(epoch))
	if r := w.Result(nil); r.MaxActiveAny != 0 || len(r.MaxActive) != 0 {
		t.Fatalf("empty watch: MaxActiveAny = %d, MaxActive = %v; want 0 and empty", r.MaxActiveAny, r.MaxActive)
	}
	w.apply(watch.Added, rrOf("x-1", "x", v1alpha1.PhaseExecuting))
	w.apply(watch.Added, rrOf("y-1", "y", v1alpha1.PhaseExecuting))
	w.apply(watch.Added, rrOf("y-2", "y", v1alpha1.PhaseBlocked))
	w.apply(watch.Added, rrOf("y-3", "y", ""))
	// Three active in y at once; then they finish, and x gets a second.
	w.apply(watch.Modified, rrOf("y-1", "y", v1alpha1.PhaseCompleted))
	w.apply(watch.Deleted, rrOf("y-2", "y", v1alpha1.PhaseBlocked))
	w.apply(watch.Modified, rrOf("y-3", "y", v1alpha1.PhaseFailed))
	w.apply(watch.Added, rrOf("x-2", "x", ""))

	r := w.Result([]string{"x"})
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

func TestWatchAddedAfter(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(epoch)
	w := newWatch("executions", Executions, clk)
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	other := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "m"}

	// Present before the watch started: never reported as Added.
	w.applyList([]runtime.Object{wfeOn("listed", node, v1alpha1.WorkflowRunning)})
	w.apply(watch.Modified, wfeOn("listed", node, v1alpha1.WorkflowCompleted))

	t0 := epoch
	clk.SetTime(t0.Add(time.Second))
	w.apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowPending))
	clk.SetTime(t0.Add(2 * time.Second))
	w.apply(watch.Added, wfeOn("c", other, v1alpha1.WorkflowPending))
	w.apply(watch.Added, wfeOn("b", other, v1alpha1.WorkflowPending))
	w.apply(watch.Added, rrOf("not-an-execution", "fp", ""))
	clk.SetTime(t0.Add(3 * time.Second))
	// Later changes of an Added object do not move its time; nor does an
	// Added delivered again under the same name.
	w.apply(watch.Modified, wfeOn("a", node, v1alpha1.WorkflowCompleted))
	w.apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowPending))

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
		got := w.AddedAfter(tc.after)
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

func TestWatchCaughtUp(t *testing.T) {
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	w := newWatch("executions", Executions, clocktesting.NewFakePassiveClock(epoch))
	listed := []client.Object{wfeOn("a", node, v1alpha1.WorkflowCompleted), wfeOn("b", node, v1alpha1.WorkflowCompleted)}
	if w.CaughtUp(listed) {
		t.Fatal("CaughtUp before any change was seen")
	}
	w.apply(watch.Added, wfeOn("a", node, v1alpha1.WorkflowRunning))
	w.apply(watch.Modified, wfeOn("a", node, v1alpha1.WorkflowCompleted))
	w.apply(watch.Added, wfeOn("b", node, v1alpha1.WorkflowRunning))
	if w.CaughtUp(listed) {
		t.Fatal("CaughtUp while b was last seen Running and is listed Completed")
	}
	w.apply(watch.Modified, wfeOn("b", node, v1alpha1.WorkflowCompleted))
	if !w.CaughtUp(listed) {
		t.Fatal("not CaughtUp after every listed state was seen")
	}
	if !w.CaughtUp(nil) {
		t.Fatal("not CaughtUp with nothing to see")
	}
}

// versionedClient gives the fake client's lists a resourceVersion, which
// RetryWatcher requires and the fake client does not set, and closes
// watching once a watch is open: the fake client ignores the
// resourceVersion to watch from, so a change made before then would be
// lost.
type versionedClient struct {
	client.WithWatch
	watching chan struct{}
	once     *sync.Once
}

func (c versionedClient) Watch(ctx context.Context, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	wi, err := c.WithWatch.Watch(ctx, list, opts...)
	if err == nil {
		c.once.Do(func() { close(c.watching) })
	}
	return wi, err
}

func (c versionedClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.WithWatch.List(ctx, list, opts...); err != nil {
		return err
	}
	if list.GetResourceVersion() == "" {
		list.SetResourceVersion("1")
	}
	return nil
}

// Start counts the listed objects, follows the changes the watch delivers
// and reports only the objects created after it started as Added; Close
// stops its goroutine (TestMain checks for leaks) and may be called again.
func TestStartFollowsWatch(t *testing.T) {
	const ns = "demo"
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "n"}
	listed := wfeOn("listed", node, v1alpha1.WorkflowRunning)
	listed.Namespace = ns
	elsewhere := wfeOn("elsewhere", node, v1alpha1.WorkflowRunning)
	elsewhere.Namespace = "other"
	cli := versionedClient{
		WithWatch: fake.NewClientBuilder().WithScheme(scheme).
			WithObjects(listed, elsewhere).WithStatusSubresource(&v1alpha1.WorkflowExecution{}).Build(),
		watching: make(chan struct{}),
		once:     new(sync.Once),
	}
	clk := clocktesting.NewFakePassiveClock(epoch)
	clk.SetTime(epoch.Add(time.Minute))

	w, err := start(t.Context(), cli, ns, "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} }, Executions, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !w.CaughtUp([]client.Object{listed}) {
		t.Fatal("the listed execution was not recorded by Start")
	}

	select {
	case <-cli.watching:
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not open a watch within 10s")
	}
	second := wfeOn("second", node, "")
	second.Namespace = ns
	if err := cli.Create(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, w, second)

	r := w.Result([]string{node.LockKey()})
	if r.MaxActive[node.LockKey()] != 2 || r.MaxActiveAny != 2 || len(r.Violations) != 1 {
		t.Errorf("result = %+v, want 2 active at once on the target (the other namespace not counted) and one violation", r)
	}
	if len(r.Gaps) != 0 {
		t.Errorf("gaps = %q, want none", r.Gaps)
	}
	got := w.AddedAfter(epoch)
	want := []Added{{Name: "second", Group: node.LockKey(), At: epoch.Add(time.Minute)}}
	if !equalAdded(got, want) {
		t.Errorf("AddedAfter = %+v, want %+v (the listed object excluded)", got, want)
	}

	w.Close()
	w.Close()
}

// waitCaughtUp polls, within a deadline, until w has seen obj's state.
func waitCaughtUp(t *testing.T, w *Watch, obj client.Object) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !w.CaughtUp([]client.Object{obj}) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not see %s within 10s", obj.GetName())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
