package owner_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

// A Deployment's chain as the Deployment controller names it: Deployment
// web, ReplicaSet web-7d4b9c8f6b (pod-template-hash 7d4b9c8f6b), and the
// Pod web-7d4b9c8f6b-x2kqp, which is gone in these tests unless added.
const (
	rsName   = "web-7d4b9c8f6b"
	hash     = "7d4b9c8f6b"
	gonePod  = "web-7d4b9c8f6b-x2kqp"
	otherPod = "web-7d4b9c8f6b-q8z5m"
)

func withLabels(o *metav1.PartialObjectMetadata, labels map[string]string) *metav1.PartialObjectMetadata {
	o.Labels = labels
	return o
}

// hashedChain is Deployment web and its ReplicaSet, without Pods.
func hashedChain() []runtime.Object {
	return []runtime.Object{
		object("apps/v1", "Deployment", ns, "web", "uid-deploy"),
		withLabels(object("apps/v1", "ReplicaSet", ns, rsName, "uid-rs", controller("apps/v1", "Deployment", "web", "uid-deploy")),
			map[string]string{"app": "web", "pod-template-hash": hash}),
	}
}

func errorOn(resource string, err error) func(*env) {
	return func(e *env) {
		e.client.PrependReactor("get", resource, func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, err
		})
	}
}

// TestResolveGoneObject: a Pod that no longer exists, with nothing
// remembered, resolves through a candidate owner a lookup confirms, and
// only otherwise to itself. Each case states exactly what was read.
func TestResolveGoneObject(t *testing.T) {
	pod := ref("v1", "Pod", ns, gonePod)
	deploy := ref("apps/v1", "Deployment", ns, "web")
	cases := []struct {
		name     string
		objs     []runtime.Object
		in       v1alpha1.TargetRef
		labels   map[string]string
		want     v1alpha1.TargetRef
		wantOK   bool
		wantGets []string
	}{
		{
			name:     "kube_pod_info owner labels",
			objs:     hashedChain(),
			in:       pod,
			labels:   map[string]string{"created_by_kind": "ReplicaSet", "created_by_name": rsName},
			want:     deploy,
			wantOK:   true,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName, "deployments shop/web"},
		},
		{
			name:     "kube_pod_owner owner labels",
			objs:     hashedChain(),
			in:       ref("v1", "Pod", ns, "not-a-generated-name"),
			labels:   map[string]string{"owner_kind": "ReplicaSet", "owner_name": rsName, "owner_is_controller": "true"},
			want:     deploy,
			wantOK:   true,
			wantGets: []string{"pods shop/not-a-generated-name", "replicasets shop/" + rsName, "deployments shop/web"},
		},
		{
			name:     "only its name: confirmed through its ReplicaSet",
			objs:     hashedChain(),
			in:       pod,
			want:     deploy,
			wantOK:   true,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName, "daemonsets shop/" + rsName, "jobs shop/" + rsName, "deployments shop/web"},
		},
		{
			name:     "its name and the pod-template-hash its alert carries",
			objs:     hashedChain(),
			in:       pod,
			labels:   map[string]string{"pod_template_hash": hash},
			want:     deploy,
			wantOK:   true,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName, "daemonsets shop/" + rsName, "jobs shop/" + rsName, "deployments shop/web"},
		},
		{
			name:   "a label names an owner that is gone too; the name still confirms",
			objs:   hashedChain(),
			in:     pod,
			labels: map[string]string{"created_by_kind": "ReplicaSet", "created_by_name": "web-5f6d7c8b9"},
			want:   deploy,
			wantOK: true,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/web-5f6d7c8b9",
				"replicasets shop/" + rsName, "daemonsets shop/" + rsName, "jobs shop/" + rsName, "deployments shop/web"},
		},
		{
			name: "a ReplicaSet of that name not owned by a Deployment is not believed",
			objs: []runtime.Object{
				withLabels(object("apps/v1", "ReplicaSet", ns, rsName, "uid-rs"), map[string]string{"pod-template-hash": hash}),
			},
			in:   pod,
			want: pod,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName,
				"daemonsets shop/" + rsName, "jobs shop/" + rsName},
		},
		{
			name: "a Deployment's ReplicaSet whose hash is not in its name is not believed",
			objs: []runtime.Object{
				object("apps/v1", "Deployment", ns, "web", "uid-deploy"),
				withLabels(object("apps/v1", "ReplicaSet", ns, rsName, "uid-rs", controller("apps/v1", "Deployment", "web", "uid-deploy")),
					map[string]string{"pod-template-hash": "5f6d7c8b9"}),
			},
			in:   pod,
			want: pod,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName,
				"daemonsets shop/" + rsName, "jobs shop/" + rsName},
		},
		{
			name:     "a StatefulSet's Pod",
			objs:     []runtime.Object{object("apps/v1", "StatefulSet", ns, "db", "uid-sts")},
			in:       ref("v1", "Pod", ns, "db-0"),
			want:     ref("apps/v1", "StatefulSet", ns, "db"),
			wantOK:   true,
			wantGets: []string{"pods shop/db-0", "statefulsets shop/db"},
		},
		{
			name:   "a DaemonSet's Pod",
			objs:   []runtime.Object{object("apps/v1", "DaemonSet", ns, "agent", "uid-ds")},
			in:     ref("v1", "Pod", ns, "agent-x2kqp"),
			want:   ref("apps/v1", "DaemonSet", ns, "agent"),
			wantOK: true,
			// Every owner the name implies is looked up: a Job of
			// that name would make it ambiguous.
			wantGets: []string{"pods shop/agent-x2kqp", "daemonsets shop/agent", "jobs shop/agent"},
		},
		{
			name: "a CronJob's Job's Pod",
			objs: []runtime.Object{
				object("batch/v1", "CronJob", ns, "backup", "uid-cj"),
				object("batch/v1", "Job", ns, "backup-29001", "uid-job", controller("batch/v1", "CronJob", "backup", "uid-cj")),
			},
			in:     ref("v1", "Pod", ns, "backup-29001-x2kqp"),
			want:   ref("batch/v1", "CronJob", ns, "backup"),
			wantOK: true,
			wantGets: []string{"pods shop/backup-29001-x2kqp", "replicasets shop/backup-29001",
				"daemonsets shop/backup-29001", "jobs shop/backup-29001", "cronjobs shop/backup"},
		},
		{
			name:     "nothing remains: the object itself",
			in:       pod,
			want:     pod,
			wantGets: []string{"pods shop/" + gonePod, "replicasets shop/" + rsName, "daemonsets shop/" + rsName, "jobs shop/" + rsName},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, tc.objs...)
			got, ok, err := e.cache.Resolve(context.Background(), tc.in, tc.labels)
			if got != tc.want || ok != tc.wantOK || err != nil {
				t.Errorf("Resolve(%v) = %v, %v, %v; want %v, %v, nil", tc.in, got, ok, err, tc.want, tc.wantOK)
			}
			if gets := e.gets(); !slices.Equal(gets, tc.wantGets) {
				t.Errorf("requests = %q; want %q", gets, tc.wantGets)
			}
			outcome := "fallback"
			if tc.wantOK {
				outcome = "inferred"
			}
			if n := e.metric(t, "resolves_total", "outcome", outcome); n != 1 {
				t.Errorf("resolves_total{outcome=%q} = %v; want 1", outcome, n)
			}
		})
	}
}

// TestResolveFails: a lookup that does not complete, of the object, of an
// owner or of a candidate owner of a gone object, makes Resolve fail with
// ErrUnresolved and the reason; it never falls back to the object.
func TestResolveFails(t *testing.T) {
	pod := ref("v1", "Pod", ns, "web-abc-1")
	forbidden := func(resource string) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "x", errors.New("no RBAC"))
	}
	refused := &url.Error{Op: "Get", URL: "https://api:6443/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name       string
		objs       []runtime.Object
		setup      func(*env)
		in         v1alpha1.TargetRef
		labels     map[string]string
		wantReason string
		wantAt     string // Kind of the object whose lookup failed
		wantErr    error
		wantGets   int
	}{
		{name: "object forbidden", objs: deploymentChain(), setup: errorOn("pods", forbidden("pods")), in: pod, wantReason: "forbidden", wantAt: "Pod", wantGets: 1},
		{name: "owner forbidden", objs: deploymentChain(), setup: errorOn("deployments", forbidden("deployments")), in: pod, wantReason: "forbidden", wantAt: "Deployment", wantGets: 3},
		{name: "unauthorized", objs: deploymentChain(), setup: errorOn("pods", apierrors.NewUnauthorized("expired")), in: pod, wantReason: "unauthorized", wantAt: "Pod", wantGets: 1},
		{name: "server timeout", objs: deploymentChain(), setup: errorOn("replicasets", apierrors.NewTimeoutError("slow", 1)), in: pod, wantReason: "timeout", wantAt: "ReplicaSet", wantGets: 2},
		{name: "internal error", objs: deploymentChain(), setup: errorOn("pods", apierrors.NewInternalError(errors.New("boom"))), in: pod, wantReason: "unavailable", wantAt: "Pod", wantGets: 1},
		{name: "too many requests", objs: deploymentChain(), setup: errorOn("pods", apierrors.NewTooManyRequests("slow down", 1)), in: pod, wantReason: "unavailable", wantAt: "Pod", wantGets: 1},
		{name: "connection refused", objs: deploymentChain(), setup: errorOn("pods", refused), in: pod, wantReason: "unavailable", wantAt: "Pod", wantErr: syscall.ECONNREFUSED, wantGets: 1},
		{
			// The pod is gone; the ReplicaSet its name implies cannot be
			// read: it may be the owner, so neither the next candidate
			// nor the pod is tried.
			name: "candidate of a gone pod times out", objs: hashedChain(),
			setup: errorOn("replicasets", apierrors.NewTimeoutError("slow", 1)),
			in:    ref("v1", "Pod", ns, gonePod), wantReason: "timeout", wantAt: "ReplicaSet", wantGets: 2,
		},
		{
			name: "candidate named by a label forbidden", objs: hashedChain(),
			setup:  errorOn("statefulsets", forbidden("statefulsets")),
			in:     ref("v1", "Pod", ns, "lonely"),
			labels: map[string]string{"owner_kind": "StatefulSet", "owner_name": "db"},
			wantAt: "StatefulSet", wantReason: "forbidden", wantGets: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, tc.objs...)
			tc.setup(e)
			got, ok, err := e.cache.Resolve(context.Background(), tc.in, tc.labels)
			var le *owner.LookupError
			if !errors.Is(err, owner.ErrUnresolved) || !errors.As(err, &le) {
				t.Fatalf("Resolve(%v) error = %v; want a *LookupError wrapping ErrUnresolved", tc.in, err)
			}
			if le.Reason != tc.wantReason || le.Kind != tc.wantAt {
				t.Errorf("LookupError reason %q at %s; want %q at %s", le.Reason, le.Kind, tc.wantReason, tc.wantAt)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
			if got != tc.in || ok {
				t.Errorf("Resolve = %v, %v; want the object itself and false along with the error", got, ok)
			}
			if gets := e.gets(); len(gets) != tc.wantGets {
				t.Errorf("requests = %q; want %d", gets, tc.wantGets)
			}
			if n := e.metric(t, "errors_total", "reason", tc.wantReason); n != 1 {
				t.Errorf("errors_total{reason=%q} = %v; want 1", tc.wantReason, n)
			}
			if n := e.metric(t, "resolves_total", "outcome", "error"); n != 1 {
				t.Errorf("resolves_total{outcome=error} = %v; want 1", n)
			}
			if n := e.metric(t, "resolves_total", "outcome", "fallback"); n != 0 {
				t.Errorf("resolves_total{outcome=fallback} = %v; want 0", n)
			}
		})
	}
}

// TestResolveErrorTTL: a failed lookup is reused for ErrorTTL, not
// NegativeTTL, so a signal retried after the outage is resolved.
func TestResolveErrorTTL(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	fail := true
	e.client.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, apierrors.NewServiceUnavailable("restarting")
		}
		return false, nil, nil
	})
	if _, _, err := e.cache.Resolve(context.Background(), pod1, nil); !errors.Is(err, owner.ErrUnresolved) {
		t.Fatalf("Resolve error = %v; want ErrUnresolved", err)
	}
	fail = false
	e.clock.Step(owner.DefaultErrorTTL - time.Nanosecond)
	if _, _, err := e.cache.Resolve(context.Background(), pod1, nil); !errors.Is(err, owner.ErrUnresolved) {
		t.Fatalf("Resolve within ErrorTTL: error = %v; want the remembered ErrUnresolved", err)
	}
	wantGets(t, e, 1)
	e.clock.Step(time.Nanosecond)
	mustResolve(t, e, pod1, deploy, true)
	wantGets(t, e, 4)
}

// TestRememberedResolution: a Pod resolved once keeps resolving to its
// Deployment after it is deleted, as long as signals about it keep
// arriving (each renews the memory), and even when nothing else would
// tell: neither labels nor a name that implies an owner.
func TestRememberedResolution(t *testing.T) {
	e := newEnv(t, nil, deploymentChain()...)
	mustResolve(t, e, pod1, deploy, true)
	wantGets(t, e, 3)

	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	if err := e.client.Tracker().Delete(pods, ns, pod1.Name); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	e.clock.Step(owner.DefaultTTL) // the pod's cache entry expires
	mustResolve(t, e, pod1, deploy, true)
	// The pod is read again (NotFound); the StatefulSet its name would
	// imply is not: memory answers first.
	wantGets(t, e, 4)
	if n := e.metric(t, "resolves_total", "outcome", "remembered"); n != 1 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 1", n)
	}

	// Each signal renews the memory: ResolutionTTL after the last one, not
	// after the first.
	e.clock.Step(owner.DefaultResolutionTTL - time.Nanosecond)
	mustResolve(t, e, pod1, deploy, true)
	e.clock.Step(owner.DefaultResolutionTTL - time.Nanosecond)
	mustResolve(t, e, pod1, deploy, true)
	if n := e.metric(t, "resolves_total", "outcome", "remembered"); n != 3 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 3", n)
	}

	// An incident quiet for ResolutionTTL is over: nothing remembered,
	// and nothing else says what the pod was.
	e.clock.Step(owner.DefaultResolutionTTL)
	mustResolve(t, e, pod1, pod1, false)
	if n := e.metric(t, "fallbacks_total", "reason", "not_found"); n != 1 {
		t.Errorf("fallbacks_total{reason=not_found} = %v; want 1", n)
	}
}

// TestRememberedSelf: a bare Pod remembered as its own workload is not
// attributed, once gone, to a StatefulSet its name happens to fit.
func TestRememberedSelf(t *testing.T) {
	bare := ref("v1", "Pod", ns, "db-0")
	e := newEnv(t, nil, object("v1", "Pod", ns, "db-0", "uid-pod"), object("apps/v1", "StatefulSet", ns, "db", "uid-sts"))
	mustResolve(t, e, bare, bare, false)
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	if err := e.client.Tracker().Delete(pods, ns, "db-0"); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	e.clock.Step(owner.DefaultTTL)
	mustResolve(t, e, bare, bare, false)
	if gets := e.gets(); !slices.Equal(gets, []string{"pods shop/db-0", "pods shop/db-0"}) {
		t.Errorf("requests = %q; want the pod twice and no candidate", gets)
	}
	if n := e.metric(t, "resolves_total", "outcome", "remembered"); n != 1 {
		t.Errorf("resolves_total{outcome=remembered} = %v; want 1", n)
	}
}

// TestRememberedBounded: at most MaxEntries resolutions are remembered,
// the least recently used evicted first, and counted.
func TestRememberedBounded(t *testing.T) {
	e := newEnv(t, func(o *owner.Options) { o.MaxEntries = 1 }, deploymentChain()...)
	mustResolve(t, e, pod1, deploy, true)
	mustResolve(t, e, pod2, deploy, true) // evicts pod1's resolution
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	for _, p := range []string{pod1.Name, pod2.Name} {
		if err := e.client.Tracker().Delete(pods, ns, p); err != nil {
			t.Fatalf("delete pod: %v", err)
		}
	}
	e.clock.Step(owner.DefaultTTL)
	mustResolve(t, e, pod2, deploy, true)
	mustResolve(t, e, pod1, pod1, false)
	if n := e.metric(t, "resolution_evictions_total", "", ""); n != 1 {
		t.Errorf("resolution_evictions_total = %v; want 1", n)
	}
}
