//go:build integration

package overlap_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/overlap"
)

// restartDeadline bounds how long the test waits for the API to serve
// again, and for a watch to see a change, after a restart.
const restartDeadline = 60 * time.Second

// TestStartEtcdAcrossRestarts runs both sources side by side across an API
// server restart and an etcd restart. Two executions are active at once
// on one target only after the API server's restart: the etcd watch must
// see it, with the exact peak and no gap, while the API server watch
// cannot resume and reports a gap. Across the etcd restart the etcd watch
// must resume where it stopped, again without a gap, and see what follows.
func TestStartEtcdAcrossRestarts(t *testing.T) {
	// The etcd watch logs each new watch after a broken one: counted, to
	// tell a resumed watch from one that never broke.
	var rewatches atomic.Int32
	ctx := logr.NewContext(t.Context(), funcr.New(func(prefix, args string) {
		if strings.Contains(args, "etcd watch broken") {
			rewatches.Add(1)
		}
		t.Log(prefix, args)
	}, funcr.Options{}))
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "shared"}
	other := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "other"}
	key := target.LockKey()

	// Present before either watch starts: listed, not Added.
	create(t, "listed", other)

	api, err := overlap.Start(ctx, cli, ns, "executions",
		func() client.ObjectList { return &v1alpha1.WorkflowExecutionList{} }, overlap.Executions)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	etcd, err := overlap.StartEtcd(ctx, cp.EtcdURL(), overlap.EtcdKey(v1alpha1.GroupVersion.Group, "workflowexecutions", ns),
		"executions", overlap.DecodeExecution, overlap.Executions)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()

	create(t, "a", target)
	finish(t, "listed")
	waitCaughtUp(t, "the API server watch", api)
	waitCaughtUp(t, "the etcd watch", etcd)
	if r := etcd.Result(nil); r.MaxActiveAny != 1 || len(r.Gaps) != 0 {
		t.Fatalf("etcd watch before any restart: %+v, want one active at a time and no gap", r)
	}

	apiRestart := time.Now()
	if err := cp.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	// a is still active: b makes two on the target.
	create(t, "b", target)
	finish(t, "a")
	finish(t, "b")
	create(t, "c", target)
	finish(t, "c")
	waitCaughtUp(t, "the etcd watch", etcd)
	if n := rewatches.Load(); n != 0 {
		t.Errorf("the etcd watch broke %d times across the API server restart, want never", n)
	}

	r := etcd.Result([]string{key})
	if r.MaxActive[key] != 2 || r.MaxActiveAny != 2 || len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "a, b") {
		t.Errorf("etcd watch across the API server restart: %+v, want exactly a and b active at once, once", r)
	}
	if len(r.Gaps) != 0 {
		t.Errorf("etcd watch across the API server restart: gaps %q, want none", r.Gaps)
	}
	if got := names(etcd.AddedAfter(apiRestart)); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("etcd watch: Added after the API server restart = %v, want b, c", got)
	}
	// The API server's new watch cache starts at a later resourceVersion
	// than the one the watch resumes from: it cannot resume, and says so.
	eventually(t, "a gap in the API server watch", func() bool { return len(api.Result(nil).Gaps) > 0 })
	if r := api.Result([]string{key}); r.MaxActive[key] != 1 || len(r.Violations) != 0 {
		t.Errorf("API server watch: %+v, want the overlap after the restart unseen", r)
	}
	t.Logf("the API server watch's gap: %q", api.Result(nil).Gaps)

	// d starts just before etcd stops, maybe before the etcd watch saw
	// it; it finishes and e runs after etcd is back.
	create(t, "d", target)
	etcdRestart := time.Now()
	if err := cp.RestartEtcd(); err != nil {
		t.Fatal(err)
	}
	finish(t, "d")
	create(t, "e", target)
	finish(t, "e")
	waitCaughtUp(t, "the etcd watch", etcd)

	if rewatches.Load() == 0 {
		t.Error("the etcd watch never watched again across the etcd restart")
	}
	r = etcd.Result([]string{key})
	if r.MaxActive[key] != 2 || r.MaxActiveAny != 2 || len(r.Violations) != 1 {
		t.Errorf("etcd watch across the etcd restart: %+v, want the one earlier overlap only", r)
	}
	if len(r.Gaps) != 0 {
		t.Errorf("etcd watch across the etcd restart: gaps %q, want none", r.Gaps)
	}
	if got := names(etcd.AddedAfter(apiRestart)); !slices.Equal(got, []string{"b", "c", "d", "e"}) {
		t.Errorf("etcd watch: Added after the API server restart = %v, want b, c, d, e", got)
	}
	if got := names(etcd.AddedAfter(etcdRestart)); !slices.Contains(got, "e") {
		t.Errorf("etcd watch: Added after the etcd restart = %v, want e among them", got)
	}
}

// create creates an execution, Pending (so active), on target; right after
// a restart the API server may need a moment before it serves.
func create(t *testing.T, name string, target v1alpha1.TargetRef) {
	t.Helper()
	wfe := &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                target,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: "rr-" + name},
			Sequence:              1,
		},
	}
	untilServed(t, "create "+name, func(ctx context.Context) error {
		err := cli.Create(ctx, wfe.DeepCopy())
		if apierrors.IsAlreadyExists(err) {
			return nil // an earlier attempt went through
		}
		return err
	})
}

// finish marks an execution Completed.
func finish(t *testing.T, name string) {
	t.Helper()
	untilServed(t, "finish "+name, func(ctx context.Context) error {
		wfe := &v1alpha1.WorkflowExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		patch := []byte(`{"status":{"phase":"Completed","reason":"Completed"}}`)
		return cli.Status().Patch(ctx, wfe, client.RawPatch("application/merge-patch+json", patch))
	})
}

// untilServed repeats op until it succeeds, within restartDeadline.
func untilServed(t *testing.T, what string, op func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(restartDeadline)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCaughtUp waits until w has seen every execution of the namespace in
// the state a fresh list shows.
func waitCaughtUp(t *testing.T, what string, w *overlap.Watch) {
	t.Helper()
	var list v1alpha1.WorkflowExecutionList
	untilServed(t, "list executions", func(ctx context.Context) error { return cli.List(ctx, &list, client.InNamespace(ns)) })
	objs := make([]client.Object, 0, len(list.Items))
	for i := range list.Items {
		objs = append(objs, &list.Items[i])
	}
	eventually(t, what+" to catch up", func() bool { return w.CaughtUp(objs) })
}

// eventually polls cond until it holds, within restartDeadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(restartDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(added []overlap.Added) []string {
	out := make([]string, 0, len(added))
	for _, a := range added {
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out
}
