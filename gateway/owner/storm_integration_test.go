//go:build integration

package owner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
	"github.com/leasehold/leasehold/lease"
)

// stormReplica is one gateway as a process would wire it: its own owner
// Cache (on a fake clock, so that the test decides when its entries
// expire), Recorder, Locker and identity, served over HTTP.
type stormReplica struct {
	url   string
	clock *clocktesting.FakeClock
	env   *env // for metric()
}

func newStormReplica(t *testing.T, ns, identity string) *stormReplica {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	crClient, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	locker, err := lease.New(cs.CoordinationV1(), lease.Options{Namespace: ns, Identity: identity, Prefix: "gw-lock"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dedup.New(crClient, locker, dedup.Options{Namespace: ns, Identity: identity})
	if err != nil {
		t.Fatal(err)
	}
	md, _ := metadataClient(t, "")
	r := &stormReplica{clock: clocktesting.NewFakeClock(time.Now()), env: &env{reg: prometheus.NewRegistry()}}
	resolver, err := owner.New(md, owner.Options{Cluster: cluster, Clock: r.clock, Registerer: r.env.reg})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Config{Dedup: rec, Resolver: resolver, Cluster: cluster, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	r.url = hs.URL + gateway.PathAlertmanager
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rec.Close(ctx); err != nil {
			t.Errorf("%s: close recorder: %v", identity, err)
		}
		locker.Close()
	})
	return r
}

// TestIntegrationPodReplacedMidStorm: a storm of alerts about one Pod of a
// Deployment, over two gateway replicas, with the Pod deleted in the
// middle of it, makes exactly one RemediationRequest, for the Deployment,
// counting every alert. Replica a resolved the Pod before it was deleted
// and answers from memory afterwards; replica b sees the Pod only once it
// is gone, and infers the Deployment from the Pod's name through its
// ReplicaSet. The alerts carry no owner labels.
func TestIntegrationPodReplacedMidStorm(t *testing.T) {
	// A namespace of its own per run, so that -count=N starts afresh.
	ns := fmt.Sprintf("owner-storm-%d", time.Now().UnixNano()%1e9)
	ctx := ctxTimeout(t, 3*time.Minute)
	if err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	deploy, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: podTemplate()},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the Deployment controller would make: a ReplicaSet named after
	// the Deployment and its pod template's hash, and Pods named after the
	// ReplicaSet with a generated suffix.
	const hash = "7d4b9c8f6b"
	tmpl := podTemplate()
	tmpl.Labels = map[string]string{"app": "web", "pod-template-hash": hash}
	rs, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef(deploy, deploymentGVK)}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := admin.CoreV1().Pods(ns)
	for _, name := range []string{"web-" + hash + "-x2kqp", "web-" + hash + "-q8z5m"} {
		if _, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels,
				OwnerReferences: []metav1.OwnerReference{controllerRef(rs, replicaSetGVK)}},
			Spec: tmpl.Spec,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const victim = "web-" + hash + "-x2kqp"

	a, b := newStormReplica(t, ns, "gw-a"), newStormReplica(t, ns, "gw-b")
	body, err := json.Marshal(map[string]any{
		"version": "4", "status": "firing", "receiver": "leasehold", "groupKey": "{}:{}",
		"alerts": []map[string]any{{
			"status":   "firing",
			"labels":   map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "pod": victim, "severity": "warning"},
			"startsAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	httpClient := &http.Client{Timeout: time.Minute}
	defer httpClient.CloseIdleConnections()
	type answer struct {
		replica string
		status  int
		body    string
		err     error
	}
	var (
		wg      sync.WaitGroup
		answers = make(chan answer, 1000)
	)
	send := func(name string, r *stormReplica, n int) {
		for range n {
			wg.Go(func() {
				resp, err := httpClient.Post(r.url, gateway.ContentTypeJSON, bytes.NewReader(body))
				if err != nil {
					answers <- answer{replica: name, err: err}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				answers <- answer{replica: name, status: resp.StatusCode, body: string(b)}
			})
		}
	}
	const before, afterA, afterB = 40, 20, 20
	total := before + afterA + afterB
	var got []answer
	receive := func(n int) {
		for range n {
			got = append(got, <-answers)
		}
	}

	// The storm starts on replica a, which resolves the Pod while it
	// exists.
	send("a", a, before)
	receive(before / 2)

	// Half of it answered, the rest in flight: the Pod is replaced. Its
	// replacement has another name; what matters is that this one is
	// gone, and that no cached read of it is left on either replica.
	if err := pods.Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, victim, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod %s after delete: %v; want NotFound", victim, err)
	}
	a.clock.Step(owner.DefaultTTL)
	b.clock.Step(owner.DefaultTTL)

	// The storm goes on, over both replicas.
	send("a", a, afterA)
	send("b", b, afterB)
	receive(total - before/2)
	wg.Wait()

	created := 0
	for _, ans := range got {
		switch {
		case ans.err != nil:
			t.Errorf("replica %s: %v", ans.replica, ans.err)
		case ans.status == http.StatusCreated:
			created++
		case ans.status != http.StatusAccepted:
			t.Errorf("replica %s: status %d, want 201 or 202: %s", ans.replica, ans.status, ans.body)
		}
	}
	if created != 1 {
		t.Errorf("%d answers were 201 Created; want exactly 1", created)
	}

	var list v1alpha1.RemediationRequestList
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	want := v1alpha1.TargetRef{Cluster: cluster, APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: "web"}
	for _, rr := range list.Items {
		t.Logf("request %s: target %s, signal target %s, count %d", rr.Name, rr.Spec.Target, rr.Spec.SignalTarget, rr.EffectiveDeduplication().OccurrenceCount)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d RemediationRequests; want exactly 1, for %s", len(list.Items), want)
	}
	rr := list.Items[0]
	if rr.Spec.Target != want {
		t.Errorf("request target %s; want %s", rr.Spec.Target, want)
	}
	if n := rr.EffectiveDeduplication().OccurrenceCount; n != int64(total) {
		t.Errorf("occurrence count %d; want %d, one per alert", n, total)
	}

	// Both ways of resolving a gone Pod were taken: otherwise the test
	// would prove nothing about them.
	if n := a.env.metric(t, "resolves_total", "outcome", "remembered"); n < afterA {
		t.Errorf("replica a: resolves_total{outcome=remembered} = %v; want at least %d", n, afterA)
	}
	if n := b.env.metric(t, "resolves_total", "outcome", "inferred"); n < 1 {
		t.Errorf("replica b: resolves_total{outcome=inferred} = %v; want at least 1", n)
	}
	for name, r := range map[string]*stormReplica{"a": a, "b": b} {
		for _, outcome := range []string{"fallback", "error"} {
			if n := r.env.metric(t, "resolves_total", "outcome", outcome); n != 0 {
				t.Errorf("replica %s: resolves_total{outcome=%s} = %v; want 0", name, outcome, n)
			}
		}
	}
}
