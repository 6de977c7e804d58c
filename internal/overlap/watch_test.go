package overlap

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
)

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
