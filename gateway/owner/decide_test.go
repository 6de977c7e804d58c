package owner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The decisions of the package, as pure functions: what a failed lookup
// means, which owners a gone object may have had, and what proves one.

func TestClassify(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	refused := &url.Error{Op: "Get", URL: "https://api:6443/api/v1/namespaces/shop/pods/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name       string
		err        error
		want       failure
		wantReason string
	}{
		{"no error", nil, noFailure, ""},
		{"not found", apierrors.NewNotFound(pods, "x"), gone, "not_found"},
		{"forbidden", apierrors.NewForbidden(pods, "x", errors.New("no RBAC")), unknowable, "forbidden"},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), unknowable, "unauthorized"},
		{"client deadline", &url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, unknowable, "timeout"},
		{"gateway timeout 504", apierrors.NewTimeoutError("slow", 1), unknowable, "timeout"},
		{"server timeout", apierrors.NewServerTimeout(pods, "get", 1), unknowable, "timeout"},
		{"internal error 500", apierrors.NewInternalError(errors.New("boom")), unknowable, "unavailable"},
		{"service unavailable 503", apierrors.NewServiceUnavailable("restarting"), unknowable, "unavailable"},
		{"bad gateway 502", apierrors.NewGenericServerResponse(502, "get", pods, "x", "", 0, false), unknowable, "unavailable"},
		{"too many requests 429", apierrors.NewTooManyRequests("slow down", 1), unknowable, "unavailable"},
		{"request timeout 408", apierrors.NewGenericServerResponse(408, "get", pods, "x", "", 0, false), unknowable, "unavailable"},
		{"connection refused", refused, unknowable, "unavailable"},
		{"unknown error", errors.New("tls: handshake failure"), unknowable, "unavailable"},
		{"bad request", apierrors.NewBadRequest("no"), permanent, "rejected"},
		{"method not allowed", apierrors.NewMethodNotSupported(pods, "get"), permanent, "rejected"},
		{"caller gone", fmt.Errorf("%w: %w", errCallerDone, context.DeadlineExceeded), unknowable, "canceled"},
		{"caller canceled", context.Canceled, unknowable, "canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := classify(tc.err)
			if got != tc.want || reason != tc.wantReason {
				t.Errorf("classify(%v) = %d, %q; want %d, %q", tc.err, got, reason, tc.want, tc.wantReason)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	pod := func(name string) objectKey { return objectKey{kind: podKind, namespace: "shop", name: name} }
	in := func(gk schema.GroupKind, name string) objectKey {
		return objectKey{kind: gk, namespace: "shop", name: name}
	}
	// c renders a candidate compactly: "Kind name proof [hash] [label]".
	type c struct {
		key        objectKey
		apiVersion string
		proof      proof
		hash       string
		label      string
	}
	cases := []struct {
		name   string
		obj    objectKey
		labels map[string]string
		want   []c
	}{
		{
			name: "deployment pod, name only",
			obj:  pod("web-7d4b9c8f6b-x2kqp"),
			want: []c{
				{in(replicaSetKind, "web-7d4b9c8f6b"), "apps/v1", proofDeploymentReplicaSet, "", ""},
				{in(daemonSetKind, "web-7d4b9c8f6b"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "web-7d4b9c8f6b"), "batch/v1", proofExists, "", ""},
			},
		},
		{
			name: "kube_pod_info labels first, then the name",
			obj:  pod("web-7d4b9c8f6b-x2kqp"),
			labels: map[string]string{
				"created_by_kind": "ReplicaSet", "created_by_name": "web-7d4b9c8f6b",
			},
			want: []c{
				// The same ReplicaSet from the name is not tried again.
				{in(replicaSetKind, "web-7d4b9c8f6b"), "apps/v1", proofExists, "", "created_by_name"},
				{in(daemonSetKind, "web-7d4b9c8f6b"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "web-7d4b9c8f6b"), "batch/v1", proofExists, "", ""},
			},
		},
		{
			name: "kube_pod_owner before kube_pod_info before workload",
			obj:  pod("lonely"),
			labels: map[string]string{
				"owner_kind": "ReplicaSet", "owner_name": "a", "owner_is_controller": "true",
				"created_by_kind": "ReplicaSet", "created_by_name": "b",
				"workload_type": "deployment", "workload": "c",
			},
			want: []c{
				{in(replicaSetKind, "a"), "apps/v1", proofExists, "", "owner_name"},
				{in(replicaSetKind, "b"), "apps/v1", proofExists, "", "created_by_name"},
				{in(deploymentKind, "c"), "apps/v1", proofExists, "", "workload"},
			},
		},
		{
			name:   "an owner that is not the controller is skipped",
			obj:    pod("lonely"),
			labels: map[string]string{"owner_kind": "ReplicaSet", "owner_name": "a", "owner_is_controller": "false"},
		},
		{
			name:   "no owner, as kube-state-metrics writes it",
			obj:    pod("lonely"),
			labels: map[string]string{"created_by_kind": "<none>", "created_by_name": "<none>"},
		},
		{
			name:   "an owner of a kind outside the table",
			obj:    pod("lonely"),
			labels: map[string]string{"owner_kind": "Rollout", "owner_name": "web"},
		},
		{
			name:   "an owner name that cannot be an object name",
			obj:    pod("lonely"),
			labels: map[string]string{"created_by_kind": "ReplicaSet", "created_by_name": "Web_1"},
		},
		{
			name:   "a mirror pod's node is cluster-scoped",
			obj:    pod("etcd-worker-1"),
			labels: map[string]string{"created_by_kind": "Node", "created_by_name": "worker-1"},
			want: []c{
				{objectKey{kind: schema.GroupKind{Kind: "Node"}, name: "worker-1"}, "v1", proofExists, "", "created_by_name"},
				// Its name looks like a StatefulSet's Pod's too.
				{in(statefulSetKind, "etcd-worker"), "apps/v1", proofExists, "", ""},
			},
		},
		{
			name:   "pod-template-hash label agrees with the name",
			obj:    pod("web-7d4b9c8f6b-x2kqp"),
			labels: map[string]string{"pod_template_hash": "7d4b9c8f6b"},
			want: []c{
				{in(replicaSetKind, "web-7d4b9c8f6b"), "apps/v1", proofDeploymentReplicaSet, "7d4b9c8f6b", ""},
				{in(daemonSetKind, "web-7d4b9c8f6b"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "web-7d4b9c8f6b"), "batch/v1", proofExists, "", ""},
			},
		},
		{
			name:   "pod-template-hash label from kube_pod_labels disagrees with the name",
			obj:    pod("web-7d4b9c8f6b-x2kqp"),
			labels: map[string]string{"label_pod_template_hash": "5f6d7c8b9"},
			want: []c{
				{in(daemonSetKind, "web-7d4b9c8f6b"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "web-7d4b9c8f6b"), "batch/v1", proofExists, "", ""},
			},
		},
		{
			name: "daemonset pod: a one-part base cannot be a deployment's replicaset",
			obj:  pod("agent-x2kqp"),
			want: []c{
				{in(daemonSetKind, "agent"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "agent"), "batch/v1", proofExists, "", ""},
			},
		},
		{
			name: "statefulset pod",
			obj:  pod("db-12"),
			want: []c{{in(statefulSetKind, "db"), "apps/v1", proofExists, "", ""}},
		},
		{
			name: "a suffix that is both an ordinal and generated",
			obj:  pod("web-abc-24567"),
			want: []c{
				{in(replicaSetKind, "web-abc"), "apps/v1", proofDeploymentReplicaSet, "", ""},
				{in(statefulSetKind, "web-abc"), "apps/v1", proofExists, "", ""},
				{in(daemonSetKind, "web-abc"), "apps/v1", proofExists, "", ""},
				{in(jobKind, "web-abc"), "batch/v1", proofExists, "", ""},
			},
		},
		{name: "ordinal with a leading zero", obj: pod("db-01")},
		{name: "suffix with characters generated names never have", obj: pod("web-abcde")},
		{name: "suffix of the wrong length", obj: pod("web-bcdf")},
		{name: "no dash", obj: pod("lonely")},
		{name: "trailing dash", obj: pod("web-")},
		{
			name:   "not a pod: only labels count",
			obj:    in(replicaSetKind, "web-7d4b9c8f6b"),
			labels: map[string]string{"deployment": "web", "workload_type": "deployment", "workload": "web"},
			want:   []c{{in(deploymentKind, "web"), "apps/v1", proofExists, "", "workload"}},
		},
		{
			name: "labels naming kinds that control nothing",
			obj:  pod("lonely"),
			labels: map[string]string{
				"owner_kind": "Pod", "owner_name": "other",
				"created_by_kind": "Service", "created_by_name": "frontend",
				"workload_type": "persistentvolumeclaim", "workload": "data",
			},
		},
		{
			name: "every workload kind, in label order",
			obj:  pod("lonely"),
			labels: map[string]string{
				"owner_kind": "ReplicationController", "owner_name": "a",
				"created_by_kind": "Job", "created_by_name": "b",
				"workload_type": "cronjob", "workload": "c",
			},
			want: []c{
				{in(schema.GroupKind{Kind: "ReplicationController"}, "a"), "v1", proofExists, "", "owner_name"},
				{in(jobKind, "b"), "batch/v1", proofExists, "", "created_by_name"},
				{in(schema.GroupKind{Group: "batch", Kind: "CronJob"}, "c"), "batch/v1", proofExists, "", "workload"},
			},
		},
		{
			name:   "kube_pod_owner of a mirror pod names its node",
			obj:    pod("etcd"),
			labels: map[string]string{"owner_kind": "Node", "owner_name": "worker-1"},
			want:   []c{{objectKey{kind: nodeKind, name: "worker-1"}, "v1", proofExists, "", "owner_name"}},
		},
		{
			name:   "a node is never a workload type",
			obj:    pod("etcd"),
			labels: map[string]string{"workload_type": "node", "workload": "worker-1"},
		},
		{
			name:   "a node controls only pods",
			obj:    in(replicaSetKind, "web-abc"),
			labels: map[string]string{"created_by_kind": "Node", "created_by_name": "worker-1"},
		},
		{
			name:   "a label naming the object itself",
			obj:    pod("lonely"),
			labels: map[string]string{"created_by_kind": "Pod", "created_by_name": "lonely"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []c
			for _, x := range candidates(tc.obj, tc.labels) {
				got = append(got, c{x.key, x.apiVersion, x.proof, x.podTemplateHash, x.fromLabel})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("candidates = %+v; want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("candidate %d = %+v; want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCandidatesBounded(t *testing.T) {
	labels := map[string]string{
		"owner_kind": "StatefulSet", "owner_name": "a",
		"created_by_kind": "DaemonSet", "created_by_name": "b",
		"workload_type": "job", "workload": "c",
	}
	got := candidates(objectKey{kind: podKind, namespace: "shop", name: "web-abc-24567"}, labels)
	if len(got) != maxCandidates {
		t.Errorf("%d candidates; want at most %d", len(got), maxCandidates)
	}
}

func TestConfirms(t *testing.T) {
	rs := objectKey{kind: replicaSetKind, namespace: "shop", name: "web-7d4b9c8f6b"}
	isTrue := true
	deployment := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "u", Controller: &isTrue}
	guessed := candidate{key: rs, proof: proofDeploymentReplicaSet}
	withHash := candidate{key: rs, proof: proofDeploymentReplicaSet, podTemplateHash: "7d4b9c8f6b"}
	fromLabel := candidate{key: rs, proof: proofExists}
	cases := []struct {
		name string
		c    candidate
		l    link
		want bool
	}{
		{"exists", fromLabel, link{uid: "u"}, true},
		{"named by a label, owned by anything", fromLabel, link{uid: "u", controller: &metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web"}}, true},
		{"not found", fromLabel, link{err: apierrors.NewNotFound(schema.GroupResource{Resource: "replicasets"}, rs.name)}, false},
		{"guessed: a deployment's replicaset", guessed, link{controller: deployment, podTemplateHash: "7d4b9c8f6b"}, true},
		{"guessed: the pod's hash agrees", withHash, link{controller: deployment, podTemplateHash: "7d4b9c8f6b"}, true},
		{"guessed: the pod's hash disagrees", withHash, link{controller: deployment, podTemplateHash: "5f6d7c8b9"}, false},
		{"guessed: no controller", guessed, link{podTemplateHash: "7d4b9c8f6b"}, false},
		{"guessed: no pod-template-hash label", guessed, link{controller: deployment}, false},
		{"guessed: name is not deployment and hash", guessed, link{controller: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"}, podTemplateHash: "7d4b9c8f6b"}, false},
		{"guessed: controlled by a rollout", guessed, link{controller: &metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web"}, podTemplateHash: "7d4b9c8f6b"}, false},
		{"guessed: a deployment of another group", guessed, link{controller: &metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Deployment", Name: "web"}, podTemplateHash: "7d4b9c8f6b"}, false},
		{"guessed: lookup failed", guessed, link{err: errors.New("boom")}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := confirms(tc.c, tc.l); got != tc.want {
				t.Errorf("confirms = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestInfer(t *testing.T) {
	key := func(gk schema.GroupKind, name string) objectKey {
		return objectKey{kind: gk, namespace: "shop", name: name}
	}
	label := func(gk schema.GroupKind, name string) candidate {
		return candidate{key: key(gk, name), proof: proofExists, fromLabel: "created_by_name"}
	}
	named := func(gk schema.GroupKind) candidate { return candidate{key: key(gk, "cache"), proof: proofExists} }
	isTrue := true
	var (
		exists   = link{uid: "u"}
		notFound = link{err: apierrors.NewNotFound(schema.GroupResource{Resource: "x"}, "x")}
		timeout  = link{err: apierrors.NewTimeoutError("slow", 1)}
		rejected = link{err: apierrors.NewBadRequest("no")}
		deployRS = link{uid: "u", podTemplateHash: "7d4b9c8f6b", controller: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: &isTrue}}
	)
	rs := candidate{key: key(replicaSetKind, "web-7d4b9c8f6b"), proof: proofDeploymentReplicaSet}
	sts, ds, job := named(statefulSetKind), named(daemonSetKind), named(jobKind)
	cases := []struct {
		name   string
		cands  []candidate
		looked []link
		want   int
		wantV  verdict
	}{
		{"no candidates", nil, nil, -1, verdictNone},
		{"nothing looked up yet", []candidate{sts}, nil, -1, verdictPending},
		{"a label candidate confirmed ends the search", []candidate{label(replicaSetKind, "a"), sts, ds}, []link{exists}, 0, verdictConfirmed},
		{"the first label candidate confirmed wins", []candidate{label(replicaSetKind, "a"), label(jobKind, "b"), sts}, []link{notFound, exists}, 1, verdictConfirmed},
		{"a label candidate not found: go on", []candidate{label(replicaSetKind, "a"), sts}, []link{notFound}, -1, verdictPending},
		{"one name candidate confirmed: all must be looked up", []candidate{sts, ds, job}, []link{exists}, -1, verdictPending},
		{"one name candidate confirmed of all", []candidate{sts, ds, job}, []link{exists, notFound, notFound}, 0, verdictConfirmed},
		{"the last name candidate the only one confirmed", []candidate{sts, ds, job}, []link{notFound, rejected, exists}, 2, verdictConfirmed},
		{"statefulset and daemonset both exist", []candidate{sts, ds, job}, []link{exists, exists}, -1, verdictAmbiguous},
		{"daemonset and job both exist", []candidate{ds, job}, []link{exists, exists}, -1, verdictAmbiguous},
		{"a deployment's replicaset and a daemonset", []candidate{rs, ds, job}, []link{deployRS, notFound, exists}, -1, verdictAmbiguous},
		{"a replicaset not a deployment's does not count", []candidate{rs, ds, job}, []link{exists, notFound, exists}, 2, verdictConfirmed},
		{"labels first, then a unique name candidate", []candidate{label(replicaSetKind, "a"), sts, ds}, []link{notFound, notFound, exists}, 2, verdictConfirmed},
		{"a name candidate unknowable, another confirmed", []candidate{sts, ds}, []link{exists, timeout}, 1, verdictUnknowable},
		{"a label candidate unknowable", []candidate{label(replicaSetKind, "a"), sts}, []link{timeout}, 0, verdictUnknowable},
		{"none confirmed", []candidate{label(replicaSetKind, "a"), sts, ds}, []link{notFound, notFound, rejected}, -1, verdictNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if i, v := infer(tc.cands, tc.looked); i != tc.want || v != tc.wantV {
				t.Errorf("infer = %d, %d; want %d, %d", i, v, tc.want, tc.wantV)
			}
		})
	}
}

func TestDeploymentOfGoneReplicaSet(t *testing.T) {
	rs := func(name string) objectKey { return objectKey{kind: replicaSetKind, namespace: "shop", name: name} }
	cases := []struct {
		name string
		rs   objectKey
		hash string
		want string // "" for none
	}{
		{"deployment's replicaset", rs("web-7d4b9c8f6b"), "7d4b9c8f6b", "web"},
		{"dashed deployment name", rs("my-web-7d4b9c8f6b"), "7d4b9c8f6b", "my-web"},
		{"no pod-template-hash", rs("web-7d4b9c8f6b"), "", ""},
		{"name does not end in the hash", rs("web-5f6d7c8b9"), "7d4b9c8f6b", ""},
		{"hash without the dash", rs("web7d4b9c8f6b"), "7d4b9c8f6b", ""},
		{"name is the hash alone", rs("-7d4b9c8f6b"), "7d4b9c8f6b", ""},
		{"not a replicaset", objectKey{kind: jobKind, namespace: "shop", name: "web-7d4b9c8f6b"}, "7d4b9c8f6b", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := deploymentOfGoneReplicaSet(tc.rs, tc.hash)
			want := objectKey{kind: deploymentKind, namespace: "shop", name: tc.want}
			if ok != (tc.want != "") || (ok && got != want) {
				t.Errorf("deploymentOfGoneReplicaSet = %v, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
