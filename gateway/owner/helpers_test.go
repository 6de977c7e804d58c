package owner_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

const (
	cluster = "local"
	ns      = "shop"
)

// object is the metadata of one object as the API server would return it.
// The fake client files it under the resource guessed from its kind
// (Pod: pods), which is the resource the Cache reads for that kind.
func object(apiVersion, kind, namespace, name string, uid types.UID, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: uid, OwnerReferences: owners},
	}
}

// controller is a controller reference, the kind the Cache follows.
func controller(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &t}
}

// plainOwner is an owner reference without controller=true.
func plainOwner(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid}
}

// ref is the TargetRef of an object of the local cluster.
func ref(apiVersion, kind, namespace, name string) v1alpha1.TargetRef {
	return v1alpha1.TargetRef{Cluster: cluster, APIVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name}
}

// deploymentChain is Pod web-abc-1 of ReplicaSet web-abc of Deployment web.
func deploymentChain() []runtime.Object {
	return []runtime.Object{
		object("apps/v1", "Deployment", ns, "web", "uid-deploy"),
		object("apps/v1", "ReplicaSet", ns, "web-abc", "uid-rs", controller("apps/v1", "Deployment", "web", "uid-deploy")),
		object("v1", "Pod", ns, "web-abc-1", "uid-pod1", controller("apps/v1", "ReplicaSet", "web-abc", "uid-rs")),
		object("v1", "Pod", ns, "web-abc-2", "uid-pod2", controller("apps/v1", "ReplicaSet", "web-abc", "uid-rs")),
	}
}

type env struct {
	client *metadatafake.FakeMetadataClient
	clock  *clocktesting.FakeClock
	reg    *prometheus.Registry
	cache  *owner.Cache
	opts   owner.Options
}

// newEnv makes a Cache over a fake client holding objs, with a fake clock
// and a registry of its own. edit, if not nil, adjusts the options.
func newEnv(t testing.TB, edit func(*owner.Options), objs ...runtime.Object) *env {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatalf("scheme: %v", err)
	}
	e := &env{
		client: metadatafake.NewSimpleMetadataClient(scheme, objs...),
		clock:  clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		reg:    prometheus.NewRegistry(),
	}
	e.opts = owner.Options{Cluster: cluster, Clock: e.clock, Registerer: e.reg}
	if edit != nil {
		edit(&e.opts)
	}
	var err error
	if e.cache, err = owner.New(e.client, e.opts); err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// gets returns the get requests the client has received, as
// "resource namespace/name" ("resource /name" when cluster-scoped).
func (e *env) gets() []string {
	var out []string
	for _, a := range e.client.Actions() {
		g, ok := a.(clienttesting.GetAction)
		if !ok || a.GetVerb() != "get" {
			continue
		}
		out = append(out, a.GetResource().Resource+" "+a.GetNamespace()+"/"+g.GetName())
	}
	return out
}

// resolve calls Resolve with a background context and no labels, and
// reports an error as a failure of t.
func (e *env) resolve(t testing.TB, obj v1alpha1.TargetRef) (v1alpha1.TargetRef, bool) {
	t.Helper()
	to, ok, err := e.cache.Resolve(context.Background(), obj, nil)
	if err != nil {
		t.Errorf("Resolve(%v): %v", obj, err)
	}
	return to, ok
}

// metric returns the value of the counter leasehold_owner_<name> with the
// given label value (label is ignored when empty), 0 if absent.
func (e *env) metric(t testing.TB, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "leasehold_owner_"+name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitFor polls cond until it holds or a generous deadline passes. It waits
// for a state other goroutines reach (callers queued behind one request);
// it never stands in for a timing assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
