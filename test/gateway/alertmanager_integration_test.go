//go:build integration

package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/internal/proc"
)

// TestAlertmanagerToThreeAuthenticatedGatewayProcesses drives three gateway
// processes, with TokenReview authentication on, from a real Alertmanager
// that holds a ServiceAccount token: alerts about the Pod of a Deployment
// become one RemediationRequest about the Deployment, an alert about a Node
// one about the Node, and resolved alerts create nothing.
func TestAlertmanagerToThreeAuthenticatedGatewayProcesses(t *testing.T) {
	ns := newNamespace(t, "am")
	shop := newNamespace(t, "shop")

	// No --insecure-no-auth: every signal needs a token the API server
	// accepts. The gateways' own kubeconfig is the admin's, which may
	// create TokenReviews.
	gws := startGateways(t, ns, 3)
	// Stops the gateways itself (their own cleanup then has nothing left
	// to do) so that their logs are read after they have exited, since
	// the race detector reports some races only at exit, and before the
	// log directory is removed.
	t.Cleanup(func() {
		for _, gw := range gws {
			if err := gw.Stop(20 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", gw.Name, err, gw.Tail(4000))
			}
		}
		amCheckLogs(t, gatewayProcs(gws)...)
	})

	// A ServiceAccount token issued for the gateway's audience, whose
	// owner may create RemediationRequests (the access review is on).
	token := senderToken(t, ns, gateway.DefaultAudience)

	// The workload chain a controller-manager would have made:
	// Deployment -> ReplicaSet -> Pod, linked by controller references.
	const podName = "cart-7d9f8-x2klm"
	createWorkload(t, shop, podName)

	// Authentication, the direct way, on every replica. The accepted
	// request carries a resolved alert: it is answered 200 without
	// creating a RemediationRequest, so the namespace stays empty.
	for _, gw := range gws {
		directAuthCheck(t, gw, token, shop, podName)
	}

	var webhooks []string
	for _, gw := range gws {
		webhooks = append(webhooks, gw.URL+amWebhookPath)
	}
	am := startAlertmanager(t, webhooks, token)
	diag := func() string { return amTails(append(gatewayProcs(gws), am.Process)...) }

	now := time.Now().UTC()
	podAlert := func(name, severity string) amAlert {
		return amAlert{
			Labels:      map[string]string{"alertname": name, "severity": severity, "namespace": shop, "pod": podName},
			Annotations: map[string]string{"summary": name + " on " + shop + "/" + podName},
			StartsAt:    now,
			EndsAt:      now.Add(time.Hour),
		}
	}
	crashLooping := podAlert("KubePodCrashLooping", "critical")
	notReady := podAlert("KubePodNotReady", "warning")
	nodeNotReady := amAlert{
		Labels:      map[string]string{"alertname": "KubeNodeNotReady", "node": "worker-1"},
		Annotations: map[string]string{"summary": "worker-1 is not ready"},
		StartsAt:    now,
		EndsAt:      now.Add(time.Hour),
	}
	am.post(t, []amAlert{crashLooping, notReady, nodeNotReady})

	deployment := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: shop, Name: "cart"}
	pod := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: shop, Name: podName}
	node := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"}
	workloadFP, nodeFP := dedup.Fingerprint(deployment), dedup.Fingerprint(node)

	// Each alert is a group of its own and every group is sent to all
	// three gateways, so once Alertmanager has delivered everything the
	// Deployment's request has counted at least 2 groups x 3 webhooks = 6
	// signals and the Node's 1 x 3 = 3. These are lower bounds, not exact
	// counts: Alertmanager resends a whole webhook after a 5xx (a gateway
	// answers 503 when contention exhausts its retries), and a resent
	// signal may already have been counted (acknowledged <= count <= sent).
	const wantWorkloadCount, wantNodeCount = 6, 3
	var rrs map[string]v1alpha1.RemediationRequest
	amWaitFor(t, 60*time.Second, "one request per incident with every webhook counted", diag, func() (bool, string, error) {
		var err error
		rrs, err = requestsByFingerprint(t, ns, workloadFP, nodeFP)
		if err != nil {
			return false, "", err
		}
		w, n := rrs[workloadFP], rrs[nodeFP]
		wd, nd := w.EffectiveDeduplication(), n.EffectiveDeduplication()
		state := fmt.Sprintf("workload request %q count %d names %v; node request %q count %d names %v",
			w.Name, wd.OccurrenceCount, wd.SignalNames, n.Name, nd.OccurrenceCount, nd.SignalNames)
		done := w.Name != "" && n.Name != "" &&
			wd.OccurrenceCount >= wantWorkloadCount && nd.OccurrenceCount >= wantNodeCount &&
			slices.Contains(wd.SignalNames, "KubePodCrashLooping") && slices.Contains(wd.SignalNames, "KubePodNotReady")
		return done, state, nil
	})

	w := rrs[workloadFP]
	if w.Spec.Target != deployment {
		t.Errorf("workload request %s: target %+v, want the Deployment %+v", w.Name, w.Spec.Target, deployment)
	}
	if w.Spec.SignalTarget != pod {
		t.Errorf("workload request %s: signalTarget %+v, want the Pod %+v", w.Name, w.Spec.SignalTarget, pod)
	}
	if w.Spec.Fingerprint != workloadFP {
		t.Errorf("workload request %s: fingerprint %s, want %s", w.Name, w.Spec.Fingerprint, workloadFP)
	}
	if w.Spec.Source != v1alpha1.SourceAlertmanager {
		t.Errorf("workload request %s: source %q, want %q", w.Name, w.Spec.Source, v1alpha1.SourceAlertmanager)
	}
	n := rrs[nodeFP]
	if n.Spec.Target != node || n.Spec.SignalTarget != node {
		t.Errorf("node request %s: target %+v, signalTarget %+v, want both %+v", n.Name, n.Spec.Target, n.Spec.SignalTarget, node)
	}
	if n.Spec.Fingerprint != nodeFP || n.Spec.SignalName != "KubeNodeNotReady" {
		t.Errorf("node request %s: fingerprint %s signalName %q, want %s and KubeNodeNotReady", n.Name, n.Spec.Fingerprint, n.Spec.SignalName, nodeFP)
	}
	namesBefore := requestNames(rrs)

	// Resolve the Pod's alerts. Alertmanager sends each of their groups
	// once more to every webhook, with the alert resolved; the gateways
	// count each such entry as ignored.
	before, err := amSignalOutcomes(gws)
	if err != nil {
		t.Fatal(err)
	}
	resolvedAt := time.Now().UTC()
	crashLooping.EndsAt, notReady.EndsAt = resolvedAt, resolvedAt
	am.post(t, []amAlert{crashLooping, notReady})
	const resolvedNotifications = 2 * 3 // groups x webhooks, one alert each
	amWaitFor(t, 60*time.Second, "resolved notifications delivered to every gateway", diag, func() (bool, string, error) {
		now, err := amSignalOutcomes(gws)
		if err != nil {
			return false, "", err
		}
		got := now[gateway.OutcomeIgnored] - before[gateway.OutcomeIgnored]
		return got >= resolvedNotifications, fmt.Sprintf("%v resolved entries ignored, outcomes %v", got, now), nil
	})

	after, err := requestsByFingerprint(t, ns, workloadFP, nodeFP)
	if err != nil {
		t.Fatalf("after the resolved notifications: %v", err)
	}
	if namesAfter := requestNames(after); !slices.Equal(namesAfter, namesBefore) {
		t.Errorf("requests after the resolved notifications %v, want the same as before %v", namesAfter, namesBefore)
	}
	outcomes, err := amSignalOutcomes(gws)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly one create per incident across the three processes, and
	// every alert Alertmanager sent was valid.
	if outcomes[gateway.OutcomeCreated] != 2 || outcomes[gateway.OutcomeRejected] != 0 {
		t.Errorf("signal outcomes over the gateways %v, want created 2 and rejected 0", outcomes)
	}
	wa, na := after[workloadFP], after[nodeFP]
	t.Logf("workload request %s count %d, node request %s count %d; outcomes %v",
		wa.Name, wa.EffectiveDeduplication().OccurrenceCount,
		na.Name, na.EffectiveDeduplication().OccurrenceCount, outcomes)
}

// createWorkload creates Deployment cart, its ReplicaSet and its Pod
// podName in namespace ns, each owned by the previous through a controller
// reference with the owner's UID.
func createWorkload(t *testing.T, ns, podName string) {
	t.Helper()
	ctx := t.Context()
	labels := map[string]string{"app": "cart"}
	selector := &metav1.LabelSelector{MatchLabels: labels}
	podSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: "cart", Image: "example.invalid/cart:1"}}}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec}

	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: ns, Labels: labels},
		Spec:       appsv1.DeploymentSpec{Selector: selector, Template: template},
	}
	if err := admin.Create(ctx, dep); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "cart-7d9f8", Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Selector: selector, Template: template},
	}
	if err := admin.Create(ctx, rs); err != nil {
		t.Fatalf("create replicaset: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: podName, Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
		},
		Spec: podSpec,
	}
	if err := admin.Create(ctx, pod); err != nil {
		t.Fatalf("create pod: %v", err)
	}
}

// directAuthCheck posts to gw without a token, with a token the API server
// does not know, and with token, and checks the answers: 401 problems for
// the first two, and 200 with the resolved alert it carries ignored for
// the last.
func directAuthCheck(t *testing.T, gw *gatewayProcess, token, ns, podName string) {
	t.Helper()
	at := time.Now().UTC()
	body, err := json.Marshal(map[string]any{
		"version":  "4",
		"status":   "resolved",
		"receiver": "auth-check",
		"groupKey": "{}:{alertname=\"AuthCheck\"}",
		"alerts": []map[string]any{{
			"status":   "resolved",
			"labels":   map[string]string{"alertname": "AuthCheck", "namespace": ns, "pod": podName},
			"startsAt": at.Add(-time.Minute),
			"endsAt":   at,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	post := func(authorization string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, gw.URL+amWebhookPath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", gateway.ContentTypeJSON)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := amHTTP.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", gw.Name, err)
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: read answer: %v", gw.Name, err)
		}
		return resp, answer
	}

	for _, c := range []struct{ what, authorization string }{
		{"no token", ""},
		{"a garbage token", "Bearer not-a-kubernetes-token"},
	} {
		resp, answer := post(c.authorization)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s, %s: %s %s, want 401\n%s", gw.Name, c.what, resp.Status, answer, gw.Tail(3000))
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != gateway.ContentTypeProblem {
			t.Errorf("%s, %s: Content-Type %q, want %s", gw.Name, c.what, resp.Header.Get("Content-Type"), gateway.ContentTypeProblem)
		}
		var p gateway.Problem
		if err := json.Unmarshal(answer, &p); err != nil || p.Type != gateway.ProblemUnauthenticated || p.Status != http.StatusUnauthorized {
			t.Errorf("%s, %s: problem %s (%v), want type %s status 401", gw.Name, c.what, answer, err, gateway.ProblemUnauthenticated)
		}
	}

	resp, answer := post("Bearer " + token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s, the ServiceAccount's token: %s %s, want 200\n%s", gw.Name, resp.Status, answer, gw.Tail(3000))
	}
	var r gateway.Result
	if err := json.Unmarshal(answer, &r); err != nil || r.Outcome != gateway.OutcomeIgnored {
		t.Errorf("%s, the ServiceAccount's token: answer %s (%v), want outcome %q", gw.Name, answer, err, gateway.OutcomeIgnored)
	}
}

// requestsByFingerprint lists the RemediationRequests of ns by fingerprint.
// Two requests for one fingerprint, or one for a fingerprint outside want,
// is an error: neither goes away by waiting.
func requestsByFingerprint(t *testing.T, ns string, want ...string) (map[string]v1alpha1.RemediationRequest, error) {
	t.Helper()
	var list v1alpha1.RemediationRequestList
	if err := admin.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list remediation requests: %w", err)
	}
	out := map[string]v1alpha1.RemediationRequest{}
	for _, rr := range list.Items {
		fp := rr.Spec.Fingerprint
		if !slices.Contains(want, fp) {
			return nil, fmt.Errorf("unexpected request %s: target %s, signal target %s, signal %q",
				rr.Name, rr.Spec.Target, rr.Spec.SignalTarget, rr.Spec.SignalName)
		}
		if prev, dup := out[fp]; dup {
			return nil, fmt.Errorf("two requests for target %s: %s and %s", rr.Spec.Target, prev.Name, rr.Name)
		}
		out[fp] = rr
	}
	return out, nil
}

func requestNames(rrs map[string]v1alpha1.RemediationRequest) []string {
	var names []string
	for _, rr := range rrs {
		names = append(names, rr.Name)
	}
	slices.Sort(names)
	return names
}

func gatewayProcs(gws []*gatewayProcess) []*proc.Process {
	var out []*proc.Process
	for _, gw := range gws {
		out = append(out, gw.Process)
	}
	return out
}
