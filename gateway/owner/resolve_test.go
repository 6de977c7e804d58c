package owner_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

// TestResolveFollowsControllers covers the chains that resolve: each case
// states the answer and exactly which objects were read to reach it.
func TestResolveFollowsControllers(t *testing.T) {
	cases := []struct {
		name     string
		objs     []runtime.Object
		in       v1alpha1.TargetRef
		want     v1alpha1.TargetRef
		wantOK   bool
		wantGets []string
	}{
		{
			name:     "pod of a replicaset of a deployment",
			objs:     deploymentChain(),
			in:       ref("v1", "Pod", ns, "web-abc-1"),
			want:     ref("apps/v1", "Deployment", ns, "web"),
			wantOK:   true,
			wantGets: []string{"pods shop/web-abc-1", "replicasets shop/web-abc", "deployments shop/web"},
		},
		{
			name:     "replicaset of a deployment",
			objs:     deploymentChain(),
			in:       ref("apps/v1", "ReplicaSet", ns, "web-abc"),
			want:     ref("apps/v1", "Deployment", ns, "web"),
			wantOK:   true,
			wantGets: []string{"replicasets shop/web-abc", "deployments shop/web"},
		},
		{
			name:     "deployment is its own workload",
			objs:     deploymentChain(),
			in:       ref("apps/v1", "Deployment", ns, "web"),
			want:     ref("apps/v1", "Deployment", ns, "web"),
			wantGets: []string{"deployments shop/web"},
		},
		{
			name: "pod of a statefulset",
			objs: []runtime.Object{
				object("apps/v1", "StatefulSet", ns, "db", "uid-sts"),
				object("v1", "Pod", ns, "db-0", "uid-pod", controller("apps/v1", "StatefulSet", "db", "uid-sts")),
			},
			in:       ref("v1", "Pod", ns, "db-0"),
			want:     ref("apps/v1", "StatefulSet", ns, "db"),
			wantOK:   true,
			wantGets: []string{"pods shop/db-0", "statefulsets shop/db"},
		},
		{
			name: "pod of a daemonset",
			objs: []runtime.Object{
				object("apps/v1", "DaemonSet", ns, "agent", "uid-ds"),
				object("v1", "Pod", ns, "agent-x1", "uid-pod", controller("apps/v1", "DaemonSet", "agent", "uid-ds")),
			},
			in:       ref("v1", "Pod", ns, "agent-x1"),
			want:     ref("apps/v1", "DaemonSet", ns, "agent"),
			wantOK:   true,
			wantGets: []string{"pods shop/agent-x1", "daemonsets shop/agent"},
		},
		{
			name: "job of a cronjob",
			objs: []runtime.Object{
				object("batch/v1", "CronJob", ns, "backup", "uid-cj"),
				object("batch/v1", "Job", ns, "backup-123", "uid-job", controller("batch/v1", "CronJob", "backup", "uid-cj")),
			},
			in:       ref("batch/v1", "Job", ns, "backup-123"),
			want:     ref("batch/v1", "CronJob", ns, "backup"),
			wantOK:   true,
			wantGets: []string{"jobs shop/backup-123", "cronjobs shop/backup"},
		},
		{
			name: "pod of a job of a cronjob",
			objs: []runtime.Object{
				object("batch/v1", "CronJob", ns, "backup", "uid-cj"),
				object("batch/v1", "Job", ns, "backup-123", "uid-job", controller("batch/v1", "CronJob", "backup", "uid-cj")),
				object("v1", "Pod", ns, "backup-123-x", "uid-pod", controller("batch/v1", "Job", "backup-123", "uid-job")),
			},
			in:       ref("v1", "Pod", ns, "backup-123-x"),
			want:     ref("batch/v1", "CronJob", ns, "backup"),
			wantOK:   true,
			wantGets: []string{"pods shop/backup-123-x", "jobs shop/backup-123", "cronjobs shop/backup"},
		},
		{
			name: "pod of a replicationcontroller",
			objs: []runtime.Object{
				object("v1", "ReplicationController", ns, "old", "uid-rc"),
				object("v1", "Pod", ns, "old-x", "uid-pod", controller("v1", "ReplicationController", "old", "uid-rc")),
			},
			in:       ref("v1", "Pod", ns, "old-x"),
			want:     ref("v1", "ReplicationController", ns, "old"),
			wantOK:   true,
			wantGets: []string{"pods shop/old-x", "replicationcontrollers shop/old"},
		},
		{
			name:     "bare pod",
			objs:     []runtime.Object{object("v1", "Pod", ns, "lonely", "uid-pod")},
			in:       ref("v1", "Pod", ns, "lonely"),
			want:     ref("v1", "Pod", ns, "lonely"),
			wantGets: []string{"pods shop/lonely"},
		},
		{
			name:     "node is cluster-scoped and its own workload",
			objs:     []runtime.Object{object("v1", "Node", "", "worker-1", "uid-node")},
			in:       ref("v1", "Node", "", "worker-1"),
			want:     ref("v1", "Node", "", "worker-1"),
			wantGets: []string{"nodes /worker-1"},
		},
		{
			// Alerts about nodes often carry the namespace of the exporter
			// that raised them; a Node is read without it, and the target
			// is returned as given.
			name:     "node named with a stray namespace",
			objs:     []runtime.Object{object("v1", "Node", "", "worker-1", "uid-node")},
			in:       ref("v1", "Node", "monitoring", "worker-1"),
			want:     ref("v1", "Node", "monitoring", "worker-1"),
			wantGets: []string{"nodes /worker-1"},
		},
		{
			name: "owner reference without controller=true is ignored",
			objs: []runtime.Object{
				object("apps/v1", "ReplicaSet", ns, "web-abc", "uid-rs"),
				object("v1", "Pod", ns, "adopted", "uid-pod", plainOwner("apps/v1", "ReplicaSet", "web-abc", "uid-rs")),
			},
			in:       ref("v1", "Pod", ns, "adopted"),
			want:     ref("v1", "Pod", ns, "adopted"),
			wantGets: []string{"pods shop/adopted"},
		},
		{
			name: "controller chosen among several owners",
			objs: []runtime.Object{
				object("apps/v1", "StatefulSet", ns, "db", "uid-sts"),
				object("v1", "Pod", ns, "db-0", "uid-pod",
					plainOwner("apps/v1", "ReplicaSet", "other", "uid-other"),
					controller("apps/v1", "StatefulSet", "db", "uid-sts")),
			},
			in:       ref("v1", "Pod", ns, "db-0"),
			want:     ref("apps/v1", "StatefulSet", ns, "db"),
			wantOK:   true,
			wantGets: []string{"pods shop/db-0", "statefulsets shop/db"},
		},
		{
			// The kubelet makes the Node the controller of a mirror Pod: a
			// namespaced object owned by a cluster-scoped one.
			name: "mirror pod resolves to its node",
			objs: []runtime.Object{
				object("v1", "Node", "", "worker-1", "uid-node"),
				object("v1", "Pod", "kube-system", "etcd-worker-1", "uid-pod", controller("v1", "Node", "worker-1", "uid-node")),
			},
			in:       ref("v1", "Pod", "kube-system", "etcd-worker-1"),
			want:     ref("v1", "Node", "", "worker-1"),
			wantOK:   true,
			wantGets: []string{"pods kube-system/etcd-worker-1", "nodes /worker-1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, tc.objs...)
			got, ok := e.resolve(t, tc.in)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Resolve(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
			if gets := e.gets(); !slices.Equal(gets, tc.wantGets) {
				t.Errorf("requests = %q; want %q", gets, tc.wantGets)
			}
			outcome := "self"
			if tc.wantOK {
				outcome = "owner"
			}
			if n := e.metric(t, "resolves_total", "outcome", outcome); n != 1 {
				t.Errorf("resolves_total{outcome=%q} = %v; want 1", outcome, n)
			}
			if n := e.metric(t, "lookups_total", "result", "miss"); int(n) != len(tc.wantGets) {
				t.Errorf("lookups_total{result=miss} = %v; want %d", n, len(tc.wantGets))
			}
		})
	}
}

// TestResolveFallsBack covers every way the chain can fail to be followed
// for good: the object itself comes back, with false and no error, and the
// reason is counted.
func TestResolveFallsBack(t *testing.T) {
	pod := ref("v1", "Pod", ns, "web-abc-1")
	errorOn := func(resource string, err error) func(*env) {
		return func(e *env) {
			e.client.PrependReactor("get", resource, func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, err
			})
		}
	}
	// chainOf builds n ReplicaSets, rs-0 controlled by rs-1 and so on,
	// with rs-(n-1) controlled by rs-loop (rs-0 makes a cycle).
	chainOf := func(n int, loop int) []runtime.Object {
		var objs []runtime.Object
		for i := range n {
			next := (i + 1) % n
			if i == n-1 {
				next = loop
			}
			objs = append(objs, object("apps/v1", "ReplicaSet", ns, fmt.Sprintf("rs-%d", i), types.UID(fmt.Sprintf("uid-%d", i)),
				controller("apps/v1", "ReplicaSet", fmt.Sprintf("rs-%d", next), types.UID(fmt.Sprintf("uid-%d", next)))))
		}
		return append(objs, object("v1", "Pod", ns, "web-abc-1", "uid-pod", controller("apps/v1", "ReplicaSet", "rs-0", "uid-0")))
	}
	cases := []struct {
		name       string
		objs       []runtime.Object
		setup      func(*env)
		in         v1alpha1.TargetRef
		wantReason string
		wantGets   int
	}{
		// The pod's name implies one candidate, StatefulSet web-abc
		// (ordinal 1), which is not found either.
		{name: "object not found", in: pod, wantReason: "not_found", wantGets: 2},
		{
			name: "owner not found",
			objs: []runtime.Object{
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("apps/v1", "ReplicaSet", "web-abc", "uid-rs")),
			},
			in: pod, wantReason: "not_found", wantGets: 2,
		},
		{
			name: "top owner not found",
			objs: deploymentChain()[1:],
			in:   pod, wantReason: "not_found", wantGets: 3,
		},
		{name: "request refused for good", objs: deploymentChain(), setup: errorOn("replicasets", apierrors.NewBadRequest("no")), in: pod, wantReason: "rejected", wantGets: 2},
		{
			name: "owner re-created under the same name",
			objs: []runtime.Object{
				object("apps/v1", "ReplicaSet", ns, "web-abc", "uid-new"),
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("apps/v1", "ReplicaSet", "web-abc", "uid-old")),
			},
			in: pod, wantReason: "owner_replaced", wantGets: 2,
		},
		{
			name: "owner of a kind outside the table",
			objs: []runtime.Object{
				object("apps/v1", "ReplicaSet", ns, "web-abc", "uid-rs", controller("argoproj.io/v1alpha1", "Rollout", "web", "uid-ro")),
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("apps/v1", "ReplicaSet", "web-abc", "uid-rs")),
			},
			in: pod, wantReason: "unknown_owner", wantGets: 2,
		},
		{
			name: "owner of a known kind in another group",
			objs: []runtime.Object{
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("extensions/v1beta1", "ReplicaSet", "web-abc", "uid-rs")),
			},
			in: pod, wantReason: "unknown_owner", wantGets: 1,
		},
		{
			name: "malformed owner apiVersion",
			objs: []runtime.Object{
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("a/b/c", "ReplicaSet", "web-abc", "uid-rs")),
			},
			in: pod, wantReason: "unknown_owner", wantGets: 1,
		},
		{
			name: "namespaced owner of a cluster-scoped object",
			objs: []runtime.Object{
				object("v1", "Node", "", "worker-1", "uid-node", controller("apps/v1", "Deployment", "web", "uid-deploy")),
			},
			in: ref("v1", "Node", "", "worker-1"), wantReason: "unknown_owner", wantGets: 1,
		},
		{
			// pod -> rs-0 -> rs-1 -> rs-2 -> rs-0: the fourth object is
			// not read again.
			name: "cycle",
			objs: chainOf(3, 0),
			in:   pod, wantReason: "cycle", wantGets: 4,
		},
		{
			name: "pod controlled by itself",
			objs: []runtime.Object{
				object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("v1", "Pod", "web-abc-1", "uid-pod1")),
			},
			in: pod, wantReason: "cycle", wantGets: 1,
		},
		{
			// pod -> rs-0 -> ... -> rs-9 -> rs-10 (absent): MaxHops owners
			// are read after the pod, and the last still has a controller.
			name: "chain longer than MaxHops",
			objs: chainOf(10, 10),
			in:   pod, wantReason: "too_long", wantGets: owner.MaxHops + 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, tc.objs...)
			if tc.setup != nil {
				tc.setup(e)
			}
			got, ok := e.resolve(t, tc.in)
			if got != tc.in || ok {
				t.Errorf("Resolve(%v) = %v, %v; want the object itself and false", tc.in, got, ok)
			}
			if gets := e.gets(); len(gets) != tc.wantGets {
				t.Errorf("requests = %q; want %d", gets, tc.wantGets)
			}
			if n := e.metric(t, "fallbacks_total", "reason", tc.wantReason); n != 1 {
				t.Errorf("fallbacks_total{reason=%q} = %v; want 1", tc.wantReason, n)
			}
			if n := e.metric(t, "resolves_total", "outcome", "fallback"); n != 1 {
				t.Errorf("resolves_total{outcome=fallback} = %v; want 1", n)
			}
		})
	}
}

// TestResolveSkips covers the objects that are not looked up at all.
func TestResolveSkips(t *testing.T) {
	cases := []struct {
		name string
		in   v1alpha1.TargetRef
	}{
		{"another cluster", v1alpha1.TargetRef{Cluster: "prod", APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: "web-abc-1"}},
		{"no cluster", v1alpha1.TargetRef{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: "web-abc-1"}},
		{"kind outside the table", ref("example.com/v1", "Widget", ns, "w")},
		{"known kind in another group", ref("example.com/v1", "Deployment", ns, "web")},
		{"namespaced kind without namespace", ref("v1", "Pod", "", "web-abc-1")},
		{"no name", ref("v1", "Pod", ns, "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, deploymentChain()...)
			got, ok := e.resolve(t, tc.in)
			if got != tc.in || ok {
				t.Errorf("Resolve(%v) = %v, %v; want the object itself and false", tc.in, got, ok)
			}
			if gets := e.gets(); len(gets) != 0 {
				t.Errorf("requests = %q; want none", gets)
			}
			if n := e.metric(t, "resolves_total", "outcome", "skipped"); n != 1 {
				t.Errorf("resolves_total{outcome=skipped} = %v; want 1", n)
			}
		})
	}
}

// TestResolveKeepsClusterAndOwnerVersion: the answer carries the input's
// cluster and the apiVersion of the reference that named the owner.
func TestResolveKeepsClusterAndOwnerVersion(t *testing.T) {
	objs := []runtime.Object{
		object("apps/v1", "Deployment", ns, "web", "uid-deploy"),
		// The reference's apiVersion is what the answer carries, not the
		// version the Cache reads at.
		object("apps/v1", "ReplicaSet", ns, "web-abc", "uid-rs", controller("apps/v1beta2", "Deployment", "web", "uid-deploy")),
	}
	e := newEnv(t, func(o *owner.Options) { o.Cluster = "eu-1" }, objs...)
	in := v1alpha1.TargetRef{Cluster: "eu-1", APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: "web-abc"}
	got, ok := e.resolve(t, in)
	want := v1alpha1.TargetRef{Cluster: "eu-1", APIVersion: "apps/v1beta2", Kind: "Deployment", Namespace: ns, Name: "web"}
	if got != want || !ok {
		t.Errorf("Resolve = %v, %v; want %v, true", got, ok, want)
	}
}

// TestResolveCallerContextDone: a caller whose context has already ended
// still gets what the cache holds, and otherwise an error (not a guess),
// without a request being sent for it.
func TestResolveCallerContextDone(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	pod1, pod2 := ref("v1", "Pod", ns, "web-abc-1"), ref("v1", "Pod", ns, "web-abc-2")
	deploy := ref("apps/v1", "Deployment", ns, "web")

	if _, _, err := e.cache.Resolve(done, pod1, nil); !errors.Is(err, owner.ErrUnresolved) || !errors.Is(err, context.Canceled) {
		t.Errorf("cold Resolve with ended context: error %v; want ErrUnresolved and context.Canceled", err)
	}
	if gets := e.gets(); len(gets) != 0 {
		t.Errorf("requests = %q; want none", gets)
	}
	if n := e.metric(t, "errors_total", "reason", "canceled"); n != 1 {
		t.Errorf("errors_total{reason=canceled} = %v; want 1", n)
	}

	if got, ok := e.resolve(t, pod1); got != deploy || !ok {
		t.Fatalf("Resolve = %v, %v; want %v, true", got, ok, deploy)
	}
	if got, ok, err := e.cache.Resolve(done, pod1, nil); got != deploy || !ok || err != nil {
		t.Errorf("warm Resolve with ended context = %v, %v, %v; want %v, true, nil", got, ok, err, deploy)
	}
	// pod2 shares the cached ReplicaSet and Deployment but its own entry
	// would need a request.
	if _, _, err := e.cache.Resolve(done, pod2, nil); !errors.Is(err, owner.ErrUnresolved) {
		t.Errorf("Resolve of an uncached pod with ended context: error %v; want ErrUnresolved", err)
	}
	if gets := e.gets(); len(gets) != 3 {
		t.Errorf("requests = %q; want the 3 of the one live Resolve", gets)
	}
}
