//go:build integration

package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/internal/proc"
	"github.com/leasehold/leasehold/orchestrator"
)

// TestServicesRunAsTheirServiceAccounts runs the three services the way the
// Deployments do (the image's binary, the container's arguments, the
// environment the downward API gives), each impersonating its
// ServiceAccount, so that every request they send is authorised by the
// kustomization's RBAC and nothing else. An alert about a Pod of a
// Deployment, sent with the token of the example Alertmanager
// ServiceAccount, must then go all the way: authenticated and authorised
// (TokenReview, SubjectAccessReview), resolved to the Deployment (owner
// lookups), recorded and counted (RemediationRequest create and status
// update), executed (WorkflowExecution create, Lease lock, status writes,
// Events) and completed, with no request refused for lack of permission.
func TestServicesRunAsTheirServiceAccounts(t *testing.T) {
	installExampleRBAC(t)
	bin := imageBinary(t)
	ctx := ctxTimeout(t, 3*time.Minute)
	dir := t.TempDir()
	c := typedClient(t)

	// What the alert names: a Pod of a ReplicaSet of a Deployment, linked
	// as their controllers would link them (no controllers run here).
	workNS := "shop"
	if err := cp.CreateNamespace(ctx, workNS); err != nil {
		t.Fatal(err)
	}
	app := "web-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	dep, pod := createWorkload(ctx, t, c, workNS, app)

	if err := cp.CreateNamespace(ctx, alertmanagerNS); err != nil {
		t.Fatal(err)
	}
	gwArgs := deployment(t, "leasehold-gateway").Spec.Template.Spec.Containers[0].Args
	audience := flagValue(gwArgs, "--token-audience")
	senderToken := serviceAccountToken(ctx, t, alertmanagerNS, alertmanagerSA, audience)
	// A valid token of a ServiceAccount without the sender binding.
	intruderToken := serviceAccountToken(ctx, t, alertmanagerNS, "intruder", audience)
	// The sender's token for the API server's audience: good against the
	// API server, so the gateway must not take it.
	apiServerToken := serviceAccountToken(ctx, t, alertmanagerNS, alertmanagerSA, "")

	gw := startService(ctx, t, bin, dir, "leasehold-gateway")
	orch := startService(ctx, t, bin, dir, "leasehold-orchestrator")
	exe := startService(ctx, t, bin, dir, "leasehold-simulated-executor")
	url := gw.scheme + "://" + gw.addrs["--listen"] + "/api/v1/signals/alertmanager"
	if gw.scheme != "https" {
		t.Errorf("the gateway serves %s, want https", gw.scheme)
	}
	payload := alertPayload(workNS, pod.Name)

	if code, body := post(ctx, t, url, "", payload); code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s, want 401", code, body)
	}
	if code, body := post(ctx, t, url, apiServerToken, payload); code != http.StatusUnauthorized {
		t.Errorf("token for the API server's audience: %d %s, want 401", code, body)
	}
	if code, body := post(ctx, t, url, intruderToken, payload); code != http.StatusForbidden {
		t.Errorf("token without the sender binding: %d %s, want 403 (--access-review)", code, body)
	}
	code, body := post(ctx, t, url, senderToken, payload)
	if code != http.StatusCreated {
		t.Fatalf("first alert: %d %s, want 201", code, body)
	}
	var first gateway.Result
	if err := json.Unmarshal(body, &first); err != nil {
		t.Fatalf("first alert: %v: %s", err, body)
	}
	code, body = post(ctx, t, url, senderToken, payload)
	var second gateway.Result
	if code != http.StatusAccepted || json.Unmarshal(body, &second) != nil ||
		second.RemediationRequest != first.RemediationRequest || second.OccurrenceCount != 2 {
		t.Fatalf("second alert: %d %s, want 202 joining %s with count 2", code, body, first.RemediationRequest)
	}

	var rr v1alpha1.RemediationRequest
	key := client.ObjectKey{Namespace: ns, Name: first.RemediationRequest}
	if err := c.Get(ctx, key, &rr); err != nil {
		t.Fatal(err)
	}
	if tg := rr.Spec.Target; tg.Kind != "Deployment" || tg.Namespace != workNS || tg.Name != dep.Name {
		t.Errorf("target %+v, want Deployment %s/%s: the owner lookups did not get through", tg, workNS, dep.Name)
	}

	// The orchestrator starts an execution, the simulator completes it,
	// the orchestrator completes the request.
	deadline := time.Now().Add(90 * time.Second)
	for rr.EffectivePhase() != v1alpha1.PhaseCompleted {
		if rr.IsTerminal() || time.Now().After(deadline) {
			t.Fatalf("request %s is %s (%s), want Completed\norchestrator:\n%s\nexecutor:\n%s",
				rr.Name, rr.EffectivePhase(), rr.Status.BlockReason, orch.Tail(3000), exe.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
		if err := c.Get(ctx, key, &rr); err != nil {
			t.Fatal(err)
		}
	}
	if rr.Status.WorkflowExecutionRef == nil {
		t.Fatalf("completed request %s names no execution", rr.Name)
	}
	var wfe v1alpha1.WorkflowExecution
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: rr.Status.WorkflowExecutionRef.Name}, &wfe); err != nil {
		t.Fatal(err)
	}
	if wfe.EffectivePhase() != v1alpha1.WorkflowCompleted {
		t.Errorf("execution %s is %s, want Completed", wfe.Name, wfe.EffectivePhase())
	}
	waitForEvent(ctx, t, rr.Name)

	// SIGTERM, as the kubelet sends: each exits cleanly, its locks released.
	for _, s := range []*service{gw, orch, exe} {
		if err := s.Stop(45 * time.Second); err != nil {
			t.Errorf("%s: %v\n%s", s.Name, err, s.Tail(3000))
		}
	}
	for _, s := range []*service{gw, orch, exe} {
		log, err := os.ReadFile(s.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s was refused a request:\n%s", s.Name, line)
			}
		}
	}
	leases, err := adminSet.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		for _, s := range []*service{gw, orch, exe} {
			if ptr.Deref(l.Spec.HolderIdentity, "") == s.podName {
				t.Errorf("lease %s is still held by %s after it stopped", l.Name, s.podName)
			}
		}
	}
}

// service is one service process started from a Deployment.
type service struct {
	*proc.Process
	podName string
	// scheme is what the readiness probe speaks: http, or https with the
	// certificate of testTLS.
	scheme string
	// addrs maps each address flag of the container's arguments to the
	// loopback address that replaced it.
	addrs map[string]string
}

// startService starts the binary with the container arguments and
// environment of the named Deployment, impersonating its ServiceAccount,
// and waits until its readiness probe passes. Address flags are moved to
// free loopback ports and TLS files to testTLS's, as the Secret would
// provide them; nothing else is changed.
func startService(ctx context.Context, t *testing.T, bin, dir, name string) *service {
	t.Helper()
	d := deployment(t, name)
	c := d.Spec.Template.Spec.Containers[0]
	s := &service{podName: d.Name + "-test", addrs: map[string]string{}}

	args := append([]string(nil), c.Args...)
	byPort := map[string]string{} // container port -> local address
	for _, a := range c.Args {
		flag, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(flag, "--") {
			continue
		}
		switch flag {
		case "--tls-cert-file", "--tls-key-file":
			cert, key := testTLS(t).files(t)
			if flag == "--tls-key-file" {
				cert = key
			}
			args = append(args, flag+"="+cert)
			continue
		}
		if _, port, err := net.SplitHostPort(value); err == nil {
			free, err := proc.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(free))
			s.addrs[flag] = addr
			byPort[port] = addr
			args = append(args, flag+"="+addr)
		}
	}
	args = append(args, "--kubeconfig="+impersonatingKubeconfig(t, dir, identity{d.Namespace, d.Spec.Template.Spec.ServiceAccountName}))

	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name+"="+downwardValue(t, d, c, e))
	}
	p, err := proc.Start(proc.Spec{Name: c.Name, Path: bin, Args: args, Env: env, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Process = p
	t.Cleanup(func() { _ = p.Stop(45 * time.Second) })

	probe := c.ReadinessProbe.HTTPGet
	port := strconv.Itoa(int(containerPort(t, c, probe.Port.String())))
	addr, ok := byPort[port]
	if !ok {
		t.Fatalf("%s: no address flag opens the readiness probe's port %s", name, port)
	}
	s.scheme = "http"
	if probe.Scheme == corev1.URISchemeHTTPS {
		s.scheme = "https"
	}
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	waitReady(readyCtx, t, p, s.scheme+"://"+addr+probe.Path)
	return s
}

// downwardValue is what the kubelet would put in the variable for a Pod of
// d named after the Deployment.
func downwardValue(t *testing.T, d *appsv1.Deployment, c corev1.Container, e corev1.EnvVar) string {
	t.Helper()
	switch {
	case e.ValueFrom == nil:
		return e.Value
	case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
		return d.Name + "-test"
	case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
		return d.Namespace
	case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" &&
		e.ValueFrom.ResourceFieldRef.Divisor.IsZero():
		return strconv.FormatInt(c.Resources.Limits.Memory().Value(), 10)
	}
	t.Fatalf("env %s: a source the test does not know how to fill: %+v", e.Name, e.ValueFrom)
	return ""
}

// impersonatingKubeconfig writes the control plane's admin kubeconfig with
// every request impersonating who, as its own token would authenticate.
func impersonatingKubeconfig(t *testing.T, dir string, who identity) string {
	t.Helper()
	cfg, err := clientcmd.Load(cp.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = who.user()
		ai.ImpersonateGroups = who.groups()
	}
	path := filepath.Join(dir, who.name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// serviceAccountToken creates the ServiceAccount if needed and returns a
// token for it issued for audience (the API server's own when empty), like
// the projected token of deploy/examples/alertmanager-token-volume.yaml.
func serviceAccountToken(ctx context.Context, t *testing.T, namespace, name, audience string) string {
	t.Helper()
	_, err := adminSet.CoreV1().ServiceAccounts(namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	tr, err := adminSet.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// createWorkload creates Deployment name, its ReplicaSet and one Pod, each
// the controller owner of the next.
func createWorkload(ctx context.Context, t *testing.T, c client.Client, namespace, name string) (*appsv1.Deployment, *corev1.Pod) {
	t.Helper()
	labels := map[string]string{"app": name}
	podSpec := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web"}}},
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podSpec,
		},
	}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	owner := func(o client.Object, kind, apiVersion string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: ptr.To(true)}}
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-5d4f8", OwnerReferences: owner(dep, "Deployment", "apps/v1")},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podSpec,
		},
	}
	if err := c.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: rs.Name + "-x2kqp", Labels: labels, OwnerReferences: owner(rs, "ReplicaSet", "apps/v1")},
		Spec:       podSpec.Spec,
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return dep, pod
}

// alertPayload is an Alertmanager webhook (version 4) with one firing alert
// about a Pod.
func alertPayload(namespace, pod string) []byte {
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": namespace, "pod": pod, "severity": "warning"}
	msg := map[string]any{
		"version":           "4",
		"groupKey":          fmt.Sprintf("{}:{alertname=%q}", "KubePodCrashLooping"),
		"truncatedAlerts":   0,
		"status":            "firing",
		"receiver":          "leasehold",
		"groupLabels":       map[string]string{"alertname": "KubePodCrashLooping"},
		"commonLabels":      labels,
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager.monitoring.svc:9093",
		"alerts": []map[string]any{{
			"status":       "firing",
			"labels":       labels,
			"annotations":  map[string]string{"summary": "Pod is crash looping."},
			"startsAt":     time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"endsAt":       "0001-01-01T00:00:00Z",
			"generatorURL": "http://prometheus.monitoring.svc:9090/graph",
			"fingerprint":  "3c1e0bd3e4b5a1f2",
		}},
	}
	b, err := json.Marshal(msg)
	if err != nil {
		panic(err) // a literal map of strings always marshals
	}
	return b
}

// post sends a webhook and returns the status and body.
func post(ctx context.Context, t *testing.T, url, token string, payload []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testTLS(t).client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// waitForEvent waits until the orchestrator has recorded an event about the
// request; the recorder sends events asynchronously.
func waitForEvent(ctx context.Context, t *testing.T, rrName string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, err := adminSet.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Regarding.Name == rrName && e.ReportingController == orchestrator.EventReporter {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event from the orchestrator about %s among %d events", rrName, len(events.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typedClient is an uncached admin client that knows the leasehold types.
func typedClient(t *testing.T) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
