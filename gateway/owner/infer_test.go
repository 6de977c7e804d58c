package owner_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	"github.com/leasehold/leasehold/gateway/owner"
)

// These tests hold the resolution of gone objects to what an operator
// expects when names, labels and memory disagree: no owner is guessed
// where two fit, a guess never outranks a label, a label names only a kind
// that controls Pods, a confirmed candidate's chain decides, requests stay
// within the documented bound, and memory lasts while signals arrive.

// A DaemonSet's Pod whose generated suffix happens to be all digits (about
// 1 in 840 suffixes) fits <sts>-<ordinal> as well. With a StatefulSet and a
// DaemonSet of the same name in the namespace, the gone Pod must not be
// pinned on the StatefulSet: the existence of both confirms neither.
func TestGonePodNameFittingStatefulSetAndDaemonSetIsNotInferred(t *testing.T) {
	e := newEnv(t, nil,
		object("apps/v1", "StatefulSet", ns, "cache", "uid-sts"),
		object("apps/v1", "DaemonSet", ns, "cache", "uid-ds"),
	)
	pod := ref("v1", "Pod", ns, "cache-24567") // a generated suffix from the DaemonSet
	got, ok, err := e.cache.Resolve(context.Background(), pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got == ref("apps/v1", "StatefulSet", ns, "cache") {
		t.Errorf("gone DaemonSet pod %s resolved to %v (ok=%v): an ambiguous name was taken as confirmed", pod.Name, got, ok)
	}
	if got != pod || ok {
		t.Errorf("Resolve = %v, %v; want the pod itself", got, ok)
	}
	if n := e.metric(t, "fallbacks_total", "reason", "ambiguous"); n != 1 {
		t.Errorf("fallbacks_total{reason=ambiguous} = %v; want 1", n)
	}
}

// A DaemonSet and a Job of the same name: a gone Pod <x>-<5 chars> of the
// Job must not be pinned on the DaemonSet.
func TestGonePodNameFittingDaemonSetAndJobIsNotInferred(t *testing.T) {
	e := newEnv(t, nil,
		object("apps/v1", "DaemonSet", ns, "node-setup", "uid-ds"),
		object("batch/v1", "Job", ns, "node-setup", "uid-job"),
	)
	pod := ref("v1", "Pod", ns, "node-setup-x2kqp")
	got, ok, err := e.cache.Resolve(context.Background(), pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Errorf("gone pod %s resolved to %v although both a DaemonSet and a Job of its base name exist", pod.Name, got)
	}
}

// An ambiguous name first, correct owner labels later: the labels decide.
func TestLabelsResolveAfterAmbiguousName(t *testing.T) {
	e := newEnv(t, nil,
		object("apps/v1", "StatefulSet", ns, "cache", "uid-sts"),
		object("apps/v1", "DaemonSet", ns, "cache", "uid-ds"),
	)
	pod := ref("v1", "Pod", ns, "cache-24567")
	if _, _, err := e.cache.Resolve(context.Background(), pod, nil); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"created_by_kind": "DaemonSet", "created_by_name": "cache"}
	got, _, err := e.cache.Resolve(context.Background(), pod, labels)
	if err != nil {
		t.Fatal(err)
	}
	if want := ref("apps/v1", "DaemonSet", ns, "cache"); got != want {
		t.Errorf("with kube_pod_info labels naming %v, Resolve = %v (remembered inference wins over labels)", want, got)
	}
}

// A name that fitted one owner when the first signal came (the DaemonSet
// was not there yet, or not yet seen) is not remembered: the owner labels
// of a later signal decide, and the guess does not outrank them.
func TestNameInferenceIsNotRemembered(t *testing.T) {
	e := newEnv(t, nil, object("apps/v1", "StatefulSet", ns, "cache", "uid-sts"))
	pod := ref("v1", "Pod", ns, "cache-24567")
	sts := ref("apps/v1", "StatefulSet", ns, "cache")
	if got, ok, err := e.cache.Resolve(context.Background(), pod, nil); err != nil || got != sts || !ok {
		t.Fatalf("Resolve = %v, %v, %v; want %v inferred from the name", got, ok, err, sts)
	}
	daemonSets := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
	if err := e.client.Tracker().Create(daemonSets, object("apps/v1", "DaemonSet", ns, "cache", "uid-ds"), ns); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(owner.DefaultTTL) // the NotFound of the DaemonSet expires
	labels := map[string]string{"created_by_kind": "DaemonSet", "created_by_name": "cache"}
	got, ok, err := e.cache.Resolve(context.Background(), pod, labels)
	if want := ref("apps/v1", "DaemonSet", ns, "cache"); err != nil || got != want || !ok {
		t.Errorf("with kube_pod_info labels naming %v, Resolve = %v, %v, %v (the name's guess was remembered)", want, got, ok, err)
	}
	if n := e.metric(t, "resolves_total", "outcome", "remembered"); n != 0 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 0", n)
	}
}

// Owner labels may only name a kind that can control a Pod, or be a
// workload. A label owner_kind=Pod (no exporter writes it) would make a
// gone Pod take another, unrelated Pod's workload; owner_kind=Service a
// Service.
func TestOwnerLabelNamingNonControllerKindIsIgnored(t *testing.T) {
	objs := append(deploymentChain(), object("v1", "Service", ns, "frontend", "uid-svc"))
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"owner_kind=Pod", map[string]string{"owner_kind": "Pod", "owner_name": "web-abc-1"}},
		{"created_by_kind=Service", map[string]string{"created_by_kind": "Service", "created_by_name": "frontend"}},
		{"workload_type=pod", map[string]string{"workload_type": "pod", "workload": "web-abc-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, objs...)
			gone := ref("v1", "Pod", ns, "batch-runner")
			got, ok, err := e.cache.Resolve(context.Background(), gone, tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				t.Errorf("gone pod %s resolved to %v through a label naming a kind that cannot control a Pod", gone.Name, got)
			}
			if gets := e.gets(); !slices.Equal(gets, []string{"pods shop/batch-runner"}) {
				t.Errorf("requests = %q; want the pod only", gets)
			}
		})
	}
}

// One alert about a gone Pod whose owner labels all name objects that do
// not exist costs the pod and its seven candidates; a repeat within
// NegativeTTL costs nothing.
func TestRequestsPerAlertWithAbsentCandidates(t *testing.T) {
	e := newEnv(t, nil)
	labels := map[string]string{
		"owner_kind": "StatefulSet", "owner_name": "a",
		"created_by_kind": "DaemonSet", "created_by_name": "b",
		"workload_type": "job", "workload": "c",
	}
	pod := ref("v1", "Pod", ns, "x-y-24567")
	if _, _, err := e.cache.Resolve(context.Background(), pod, labels); err != nil {
		t.Fatal(err)
	}
	n := len(e.gets())
	if n != 8 {
		t.Errorf("%d requests %q; want 8 (the pod and seven candidates)", n, e.gets())
	}
	if _, _, err := e.cache.Resolve(context.Background(), pod, labels); err != nil {
		t.Fatal(err)
	}
	if m := len(e.gets()); m != n {
		t.Errorf("repeat sent %d more requests; want none (negative cache)", m-n)
	}
}

// A confirmed label candidate ends the search: its chain decides, even
// when it breaks. Three label candidates exist, each the start of a chain
// of MaxHops+1 ReplicaSets (too long): only the first is followed, and the
// fallback says why.
func TestRequestsPerAlertWithBrokenConfirmedCandidates(t *testing.T) {
	var objs []runtime.Object
	for c := range 3 {
		for j := range owner.MaxHops + 1 {
			name := fmt.Sprintf("c%d-%d", c, j)
			next := fmt.Sprintf("c%d-%d", c, j+1)
			objs = append(objs, object("apps/v1", "ReplicaSet", ns, name, types.UID(name), controller("apps/v1", "ReplicaSet", next, types.UID(next))))
		}
	}
	e := newEnv(t, nil, objs...)
	labels := map[string]string{
		"owner_kind": "ReplicaSet", "owner_name": "c0-0",
		"created_by_kind": "ReplicaSet", "created_by_name": "c1-0",
		"workload_type": "replicaset", "workload": "c2-0",
	}
	pod := ref("v1", "Pod", ns, "x-y-24567")
	got, ok, err := e.cache.Resolve(context.Background(), pod, labels)
	if err != nil || got != pod || ok {
		t.Fatalf("Resolve = %v, %v, %v; want the pod itself", got, ok, err)
	}
	// The pod, then c0-0 to c0-8.
	if n, want := len(e.gets()), 1+owner.MaxHops+1; n != want {
		t.Errorf("one alert sent %d requests %q; want %d", n, e.gets(), want)
	}
	if n := e.metric(t, "fallbacks_total", "reason", "too_long"); n != 1 {
		t.Errorf("fallbacks_total{reason=too_long} = %v; want 1", n)
	}
}

// The worst case the package documentation states: the gone object, every
// candidate (three from labels, four from the name), and MaxHops owners of
// the one confirmed.
func TestRequestsPerAlertWorstCase(t *testing.T) {
	// ReplicaSet x-y of Deployment x (hash y), and x controlled by a chain
	// of Deployments x-1 ... so that the ReplicaSet's chain is MaxHops
	// long past the ReplicaSet.
	objs := []runtime.Object{
		withLabels(object("apps/v1", "ReplicaSet", ns, "x-y", "uid-rs", controller("apps/v1", "Deployment", "x", "x")),
			map[string]string{"pod-template-hash": "y"}),
	}
	prev := "x"
	for j := 1; j < owner.MaxHops; j++ {
		next := fmt.Sprintf("x-%d", j)
		objs = append(objs, object("apps/v1", "Deployment", ns, prev, types.UID(prev), controller("apps/v1", "Deployment", next, types.UID(next))))
		prev = next
	}
	objs = append(objs, object("apps/v1", "Deployment", ns, prev, types.UID(prev)))
	e := newEnv(t, nil, objs...)
	labels := map[string]string{
		"owner_kind": "StatefulSet", "owner_name": "a",
		"created_by_kind": "DaemonSet", "created_by_name": "b",
		"workload_type": "job", "workload": "c",
	}
	pod := ref("v1", "Pod", ns, "x-y-24567")
	got, ok, err := e.cache.Resolve(context.Background(), pod, labels)
	if want := ref("apps/v1", "Deployment", ns, prev); err != nil || got != want || !ok {
		t.Fatalf("Resolve = %v, %v, %v; want %v", got, ok, err, want)
	}
	if n, bound := len(e.gets()), 1+7+owner.MaxHops; n != bound {
		t.Errorf("one alert sent %d requests %q; want the documented bound %d", n, e.gets(), bound)
	}
}

// Concurrent resolves of existing and gone Pods, with label inference,
// memory renewals and evictions from a tiny MaxEntries, under -race.
func TestConcurrentGoneResolves(t *testing.T) {
	e := newEnv(t, func(o *owner.Options) { o.MaxEntries = 3 }, append(deploymentChain(), hashedChain()[1])...)
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				var labels map[string]string
				if i%2 == 0 {
					labels = map[string]string{"created_by_kind": "ReplicaSet", "created_by_name": rsName}
				}
				names := []string{"web-abc-1", "web-abc-2", gonePod, fmt.Sprintf("web-7d4b9c8f6b-%c%c%c%c%c", "bcdfg"[g%5], "hjklm"[i%5], 'n', 'p', 'q')}
				for _, n := range names {
					if _, _, err := e.cache.Resolve(context.Background(), ref("v1", "Pod", ns, n), labels); err != nil {
						t.Error(err)
						return
					}
				}
				if g == 0 && i == 50 {
					_ = e.client.Tracker().Delete(pods, ns, "web-abc-1")
				}
				if g == 1 && i%20 == 0 {
					e.clock.Step(owner.DefaultTTL)
				}
			}
		})
	}
	wg.Wait()
}

// A Pod still terminating after its ReplicaSet was deleted (a rollout with
// revisionHistoryLimit 0 deletes the old ReplicaSet once its active
// replicas are 0, while its Pods terminate), on a gateway replica with
// nothing remembered: its controller reference and pod-template-hash say
// which Deployment it belonged to, and that Deployment exists.
func TestLivePodOfGoneReplicaSetResolvesToItsDeployment(t *testing.T) {
	e := newEnv(t, nil,
		object("apps/v1", "Deployment", ns, "web", "uid-deploy"),
		withLabels(object("v1", "Pod", ns, gonePod, "uid-pod", controller("apps/v1", "ReplicaSet", rsName, "uid-rs")),
			map[string]string{"pod-template-hash": hash}),
	)
	got, ok, err := e.cache.Resolve(context.Background(), ref("v1", "Pod", ns, gonePod), nil)
	if want := ref("apps/v1", "Deployment", ns, "web"); err != nil || got != want || !ok {
		t.Errorf("terminating pod of a deleted ReplicaSet of Deployment web: Resolve = %v, %v, %v; want %v", got, ok, err, want)
	}
	want := []string{"pods shop/" + gonePod, "replicasets shop/" + rsName, "deployments shop/web"}
	if gets := e.gets(); !slices.Equal(gets, want) {
		t.Errorf("requests = %q; want %q", gets, want)
	}
	if n := e.metric(t, "resolves_total", "outcome", "inferred"); n != 1 {
		t.Errorf("resolves_total{outcome=inferred} = %v; want 1", n)
	}
}

// The Deployment a gone ReplicaSet's name and the Pod's hash imply is
// believed only if it exists; a Pod without the label, or a ReplicaSet
// name that does not end in it, implies none.
func TestLivePodOfGoneReplicaSetFallsBack(t *testing.T) {
	cases := []struct {
		name     string
		rs       string
		labels   map[string]string
		objs     []runtime.Object
		wantGets int
	}{
		{name: "deployment gone too", rs: rsName, labels: map[string]string{"pod-template-hash": hash}, wantGets: 3},
		{name: "no pod-template-hash label", rs: rsName, objs: []runtime.Object{object("apps/v1", "Deployment", ns, "web", "uid-deploy")}, wantGets: 2},
		{
			name: "replicaset name does not end in the hash", rs: "web-5f6d7c8b9", labels: map[string]string{"pod-template-hash": hash},
			objs: []runtime.Object{object("apps/v1", "Deployment", ns, "web", "uid-deploy")}, wantGets: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := append(tc.objs, withLabels(object("v1", "Pod", ns, gonePod, "uid-pod", controller("apps/v1", "ReplicaSet", tc.rs, "uid-rs")), tc.labels))
			e := newEnv(t, nil, objs...)
			pod := ref("v1", "Pod", ns, gonePod)
			got, ok, err := e.cache.Resolve(context.Background(), pod, nil)
			if err != nil || got != pod || ok {
				t.Errorf("Resolve = %v, %v, %v; want the pod itself", got, ok, err)
			}
			if gets := e.gets(); len(gets) != tc.wantGets {
				t.Errorf("requests = %q; want %d", gets, tc.wantGets)
			}
			if n := e.metric(t, "fallbacks_total", "reason", "not_found"); n != 1 {
				t.Errorf("fallbacks_total{reason=not_found} = %v; want 1", n)
			}
		})
	}
}

// A confirmed candidate's chain decides, as it does for an object that
// exists: a StatefulSet controlled by a kind outside the table (as
// operators such as ECK make them) ends in a fallback to the object for
// that reason, the same answer the Pod had while it existed, not a
// search for another candidate ending in not_found.
func TestConfirmedCandidateChainDecides(t *testing.T) {
	objs := []runtime.Object{
		object("apps/v1", "StatefulSet", ns, "es-default", "uid-sts", controller("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", "es", "uid-es")),
		object("v1", "Pod", ns, "es-default-0", "uid-pod", controller("apps/v1", "StatefulSet", "es-default", "uid-sts")),
	}
	e := newEnv(t, nil, objs...)
	pod := ref("v1", "Pod", ns, "es-default-0")
	live, liveOK := e.resolve(t, pod)
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	if err := e.client.Tracker().Delete(pods, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(owner.DefaultTTL)
	got, ok, err := e.cache.Resolve(context.Background(), pod, nil)
	if err != nil || got != live || ok != liveOK {
		t.Errorf("gone: Resolve = %v, %v, %v; want what it was while the pod existed: %v, %v", got, ok, err, live, liveOK)
	}
	if n := e.metric(t, "fallbacks_total", "reason", "unknown_owner"); n != 2 {
		t.Errorf("fallbacks_total{reason=unknown_owner} = %v; want 2 (live and gone)", n)
	}
	if n := e.metric(t, "fallbacks_total", "reason", "not_found"); n != 0 {
		t.Errorf("fallbacks_total{reason=not_found} = %v; want 0", n)
	}
}

// A resolution is kept ResolutionTTL after the last Resolve of the object,
// including Resolves refused during an API outage: signals arrived every
// 50 minutes, and the Pod, deleted meanwhile, still resolves to its
// Deployment after the outage.
func TestMemoryRenewedByFailedResolves(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	mustResolve(t, e, pod1, deploy, true)

	down := true
	e.client.PrependReactor("get", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		if down {
			return true, nil, apierrors.NewServiceUnavailable("etcd down")
		}
		return false, nil, nil
	})
	for range 2 {
		e.clock.Step(50 * time.Minute)
		if _, _, err := e.cache.Resolve(context.Background(), pod1, nil); err == nil {
			t.Fatal("Resolve during the outage succeeded")
		}
	}
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	if err := e.client.Tracker().Delete(pods, ns, pod1.Name); err != nil {
		t.Fatal(err)
	}
	down = false
	e.clock.Step(10 * time.Minute) // last Resolve 10 minutes ago
	got, ok, err := e.cache.Resolve(context.Background(), pod1, nil)
	if err != nil || got != deploy || !ok {
		t.Errorf("after the outage Resolve = %v, %v, %v; want %v (last Resolve 10m ago)", got, ok, err, deploy)
	}
}
