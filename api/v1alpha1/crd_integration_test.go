//go:build integration

package v1alpha1_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
)

const ns = "leasehold-system"

var (
	cs  kubernetes.Interface
	cli client.Client
	raw *rawAPI
)

func TestMain(m *testing.M) {
	os.Exit(controlplane.Run(m, controlplane.Options{Namespaces: []string{ns}}, func(cp *controlplane.ControlPlane) error {
		scheme := runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return err
		}
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		var err error
		if cs, err = kubernetes.NewForConfig(cp.Config); err != nil {
			return err
		}
		hc, err := rest.HTTPClientFor(cp.Config)
		if err != nil {
			return err
		}
		raw = &rawAPI{host: strings.TrimSuffix(cp.Config.Host, "/"), hc: hc}
		cli, err = client.New(cp.Config, client.Options{Scheme: scheme})
		return err
	}))
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var fingerprintSeq int

// newRR returns a valid request whose fingerprint is unique to the test run.
func newRR(t *testing.T) *v1alpha1.RemediationRequest {
	t.Helper()
	fingerprintSeq++
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", t.Name(), fingerprintSeq))
	fp := hex.EncodeToString(sum[:])
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "rr-",
			Namespace:    ns,
			Labels: map[string]string{
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp),
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(target),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  fp,
			SignalName:   "KubePodCrashLooping",
			Severity:     "critical",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       target,
			SignalTarget: v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-7d9f-abcde"},
			ReceivedAt:   metav1.NowMicro(),
		},
	}
}

func TestLeaseRoundTrip(t *testing.T) {
	ctx := testContext(t)
	leases := cs.CoordinationV1().Leases(ns)
	in := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("me"), LeaseDurationSeconds: ptr.To[int32](30)},
	}
	created, err := leases.Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create lease: %v", err)
	}
	got, err := leases.Get(ctx, "smoke", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease: %v", err)
	}
	if got.UID != created.UID || ptr.Deref(got.Spec.HolderIdentity, "") != "me" {
		t.Fatalf("got lease %s holder %q, want %s holder me", got.UID, ptr.Deref(got.Spec.HolderIdentity, ""), created.UID)
	}
	if err := leases.Delete(ctx, "smoke", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &created.UID}}); err != nil {
		t.Fatalf("delete lease: %v", err)
	}
	if _, err := leases.Get(ctx, "smoke", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: err = %v, want NotFound", err)
	}
}

func TestRemediationRequestRoundTrip(t *testing.T) {
	ctx := testContext(t)
	rr := newRR(t)
	rr.Status.Phase = v1alpha1.PhaseExecuting // dropped by the status subresource on create
	if err := cli.Create(ctx, rr); err != nil {
		t.Fatalf("create: %v", err)
	}
	got := &v1alpha1.RemediationRequest{}
	if err := cli.Get(ctx, client.ObjectKeyFromObject(rr), got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Status.Phase != "" {
		t.Fatalf("status.phase after create = %q, want empty (status subresource)", got.Status.Phase)
	}
	if p := got.EffectivePhase(); p != v1alpha1.PhasePending {
		t.Fatalf("EffectivePhase = %q, want Pending", p)
	}
	if d := got.EffectiveDeduplication(); d.OccurrenceCount != 1 || !d.FirstSeenAt.Equal(&got.Spec.ReceivedAt) {
		t.Fatalf("EffectiveDeduplication = %+v, want count 1 first seen at receivedAt", d)
	}

	now := metav1.NowMicro()
	got.Status.Deduplication = &v1alpha1.DeduplicationStatus{FirstSeenAt: got.Spec.ReceivedAt, LastSeenAt: now, OccurrenceCount: 7, SignalNames: []string{"A", "B"}}
	got.Status.Phase = v1alpha1.PhaseBlocked
	got.Status.BlockReason = v1alpha1.BlockReasonResourceBusy
	if err := cli.Status().Update(ctx, got); err != nil {
		t.Fatalf("status update: %v", err)
	}
	again := &v1alpha1.RemediationRequest{}
	if err := cli.Get(ctx, client.ObjectKeyFromObject(rr), again); err != nil {
		t.Fatalf("get: %v", err)
	}
	if again.EffectiveDeduplication().OccurrenceCount != 7 || again.EffectivePhase() != v1alpha1.PhaseBlocked {
		t.Fatalf("after status update: count %d phase %q", again.EffectiveDeduplication().OccurrenceCount, again.EffectivePhase())
	}

	if err := cli.Delete(ctx, again, client.Preconditions{UID: &again.UID}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := cli.Get(ctx, client.ObjectKeyFromObject(rr), again); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: err = %v, want NotFound", err)
	}
}

// expectInvalid asserts a 422 whose message names what was wrong.
func expectInvalid(t *testing.T, what string, err error, mention string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("%s: err = %v, want Invalid (422)", what, err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("%s: error %q does not mention %q", what, err, mention)
	}
}

func TestRemediationRequestSchemaRejects(t *testing.T) {
	ctx := testContext(t)

	t.Run("bad fingerprint", func(t *testing.T) {
		rr := newRR(t)
		rr.Spec.Fingerprint = "not-a-sha256"
		expectInvalid(t, "create", cli.Create(ctx, rr), "spec.fingerprint")
	})
	t.Run("bad source", func(t *testing.T) {
		rr := newRR(t)
		rr.Spec.Source = "pagerduty"
		expectInvalid(t, "create", cli.Create(ctx, rr), "spec.source")
	})
	t.Run("missing target name", func(t *testing.T) {
		rr := newRR(t)
		rr.Spec.Target.Name = ""
		expectInvalid(t, "create", cli.Create(ctx, rr), "spec.target.name")
	})

	rr := newRR(t)
	if err := cli.Create(ctx, rr); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), rr) })

	t.Run("bad phase through status", func(t *testing.T) {
		bad := rr.DeepCopy()
		bad.Status.Phase = "Exploded"
		expectInvalid(t, "status update", cli.Status().Update(ctx, bad), "status.phase")
	})
	t.Run("zero occurrence count", func(t *testing.T) {
		bad := rr.DeepCopy()
		bad.Status.Deduplication = &v1alpha1.DeduplicationStatus{FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: rr.Spec.ReceivedAt}
		expectInvalid(t, "status update", cli.Status().Update(ctx, bad), "status.deduplication.occurrenceCount")
	})
	t.Run("too many signal names", func(t *testing.T) {
		bad := rr.DeepCopy()
		names := make([]string, v1alpha1.MaxSignalNames+1)
		for i := range names {
			names[i] = "alert-" + string(rune('a'+i))
		}
		bad.Status.Deduplication = &v1alpha1.DeduplicationStatus{FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: rr.Spec.ReceivedAt, OccurrenceCount: 1, SignalNames: names}
		expectInvalid(t, "status update", cli.Status().Update(ctx, bad), "signalNames")
	})
	t.Run("changed spec", func(t *testing.T) {
		bad := rr.DeepCopy()
		bad.Spec.Target.Name = "other"
		expectInvalid(t, "update", cli.Update(ctx, bad), "spec is immutable")
	})
}

func TestWorkflowExecutionSchema(t *testing.T) {
	ctx := testContext(t)
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"}
	wfe := &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "wfe-schema", Namespace: ns, Labels: map[string]string{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(target)}},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                target,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: "rr-x", UID: "1234"},
			Sequence:              1,
			FencingToken:          "42",
			Timeout:               &metav1.Duration{Duration: time.Minute},
		},
	}
	if err := cli.Create(ctx, wfe); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), wfe) })

	bad := wfe.DeepCopy()
	bad.Status.Phase = "Paused"
	expectInvalid(t, "status update", cli.Status().Update(ctx, bad), "status.phase")

	bad = wfe.DeepCopy()
	bad.Spec.Sequence = 2
	expectInvalid(t, "update", cli.Update(ctx, bad), "spec is immutable")

	zero := wfe.DeepCopy()
	zero.ObjectMeta = metav1.ObjectMeta{Name: "wfe-zero", Namespace: ns}
	zero.Spec.Sequence = 0
	expectInvalid(t, "create", cli.Create(ctx, zero), "spec.sequence")

	ok := wfe.DeepCopy()
	ok.Status.Phase = v1alpha1.WorkflowRunning
	if err := cli.Status().Update(ctx, ok); err != nil {
		t.Fatalf("status update to Running: %v", err)
	}
}

func TestListBySelectors(t *testing.T) {
	ctx := testContext(t)
	a, b := newRR(t), newRR(t)
	b.Spec.Fingerprint = strings.Repeat("ab", 32)
	b.Labels[v1alpha1.LabelFingerprint] = v1alpha1.FingerprintLabelValue(b.Spec.Fingerprint)
	b.Spec.Target.Name = "api"
	b.Labels[v1alpha1.LabelTarget] = v1alpha1.TargetLabelValue(b.Spec.Target)
	for _, rr := range []*v1alpha1.RemediationRequest{a, b} {
		if err := cli.Create(ctx, rr); err != nil {
			t.Fatalf("create: %v", err)
		}
		t.Cleanup(func() { _ = cli.Delete(context.Background(), rr) })
	}

	var byField v1alpha1.RemediationRequestList
	if err := cli.List(ctx, &byField, client.InNamespace(ns), client.MatchingFields{"spec.fingerprint": b.Spec.Fingerprint}); err != nil {
		t.Fatalf("list by field: %v", err)
	}
	if len(byField.Items) != 1 || byField.Items[0].Name != b.Name {
		t.Fatalf("list by spec.fingerprint: got %d items, want exactly %s", len(byField.Items), b.Name)
	}

	var byLabel v1alpha1.RemediationRequestList
	if err := cli.List(ctx, &byLabel, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(a.Spec.Fingerprint)}); err != nil {
		t.Fatalf("list by label: %v", err)
	}
	if len(byLabel.Items) != 1 || byLabel.Items[0].Name != a.Name {
		t.Fatalf("list by fingerprint label: got %d items, want exactly %s", len(byLabel.Items), a.Name)
	}

	var byTarget v1alpha1.RemediationRequestList
	if err := cli.List(ctx, &byTarget, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelTarget: v1alpha1.TargetLabelValue(b.Spec.Target)}); err != nil {
		t.Fatalf("list by target label: %v", err)
	}
	if len(byTarget.Items) != 1 || byTarget.Items[0].Name != b.Name {
		t.Fatalf("list by target label: got %d items, want exactly %s", len(byTarget.Items), b.Name)
	}

	// A field the CRD does not declare selectable is refused, not ignored.
	var bad v1alpha1.RemediationRequestList
	err := cli.List(ctx, &bad, client.InNamespace(ns), client.MatchingFields{"spec.signalName": "x"})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("list by undeclared field: err = %v, want BadRequest", err)
	}
}

// Both fences (request generations in the gateway, execution generations
// in the orchestrator) rely on a terminal phase never changing again.
func TestTerminalPhaseIsFinal(t *testing.T) {
	ctx := testContext(t)
	rr := newRR(t)
	if err := cli.Create(ctx, rr); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), rr) })

	for _, phase := range []v1alpha1.RemediationPhase{v1alpha1.PhaseBlocked, v1alpha1.PhaseExecuting, v1alpha1.PhaseCompleted} {
		rr.Status.Phase = phase
		if err := cli.Status().Update(ctx, rr); err != nil {
			t.Fatalf("move to %s: %v", phase, err)
		}
	}
	// Only the phase is frozen; the rest of a terminal status may change.
	rr.Status.BlockReason = ""
	rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: rr.Spec.ReceivedAt, OccurrenceCount: 2}
	if err := cli.Status().Update(ctx, rr); err != nil {
		t.Fatalf("update a terminal request's count: %v", err)
	}
	for _, phase := range []v1alpha1.RemediationPhase{v1alpha1.PhaseExecuting, v1alpha1.PhaseFailed, ""} {
		back := rr.DeepCopy()
		back.Status.Phase = phase
		expectInvalid(t, "leave Completed for "+string(phase), cli.Status().Update(ctx, back), "a terminal phase is final")
	}

	wfe := &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "wfe-", Namespace: ns},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                rr.Spec.Target,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: rr.Name, UID: string(rr.UID)},
			Sequence:              1,
		},
	}
	if err := cli.Create(ctx, wfe); err != nil {
		t.Fatalf("create execution: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), wfe) })
	for _, phase := range []v1alpha1.WorkflowPhase{v1alpha1.WorkflowRunning, v1alpha1.WorkflowCancelled} {
		wfe.Status.Phase = phase
		if err := cli.Status().Update(ctx, wfe); err != nil {
			t.Fatalf("move execution to %s: %v", phase, err)
		}
	}
	back := wfe.DeepCopy()
	back.Status.Phase = v1alpha1.WorkflowRunning
	expectInvalid(t, "leave Cancelled", cli.Status().Update(ctx, back), "a terminal phase is final")
}

// rawAPI sends requests as they arrive on the wire, bypassing the typed
// clients, which cannot send a status write without a status field.
type rawAPI struct {
	host string
	hc   *http.Client
}

// do sends body to path and returns the status code and the response body.
func (a *rawAPI) do(ctx context.Context, t *testing.T, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, a.host+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// objectPath is the URL path of a leasehold.dev object of the given
// resource (plural) in ns.
func objectPath(resource, name string) string {
	return "/apis/" + v1alpha1.GroupVersion.Group + "/" + v1alpha1.GroupVersion.Version + "/namespaces/" + ns + "/" + resource + "/" + name
}

// expectRejected asserts that a raw write was answered 422 with a message
// that contains mention.
func expectRejected(t *testing.T, what string, code int, body []byte, mention string) {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s: answered %d with a body that is not a Status: %q", what, code, body)
	}
	if code != http.StatusUnprocessableEntity || st.Code != http.StatusUnprocessableEntity {
		t.Fatalf("%s: answered %d (%s), want 422", what, code, st.Message)
	}
	if !strings.Contains(st.Message, mention) {
		t.Fatalf("%s: message %q does not mention %q", what, st.Message, mention)
	}
}

// withoutStatus returns obj, of the given kind, as JSON with the status
// field removed.
func withoutStatus(t *testing.T, kind string, obj client.Object) []byte {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	delete(m, "status")
	m["apiVersion"], m["kind"] = v1alpha1.GroupVersion.String(), kind
	if b, err = json.Marshal(m); err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// Writes to the status subresource that carry no status at all must not
// turn a terminal request or execution back into a Pending one: the
// gateway's generation fence and the orchestrator's execution fence both
// read "terminal" as "forever". Sent raw, since the typed clients always
// send a status.
func TestTerminalPhaseSurvivesStatusRemoval(t *testing.T) {
	ctx := testContext(t)

	rr := newRR(t)
	if err := cli.Create(ctx, rr); err != nil {
		t.Fatalf("create request: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), rr) })
	wfe := &v1alpha1.WorkflowExecution{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "wfe-", Namespace: ns},
		Spec: v1alpha1.WorkflowExecutionSpec{
			Target:                rr.Spec.Target,
			RemediationRequestRef: v1alpha1.ObjectReference{Name: rr.Name, UID: string(rr.UID)},
			Sequence:              1,
		},
	}
	if err := cli.Create(ctx, wfe); err != nil {
		t.Fatalf("create execution: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete(context.Background(), wfe) })

	const merge, jsonPatch = "application/merge-patch+json", "application/json-patch+json"
	for _, tc := range []struct {
		resource string
		kind     string
		obj      client.Object
		phases   []string // the last is terminal
		phase    func() string
	}{
		{"remediationrequests", "RemediationRequest", rr, []string{"Blocked", "Executing", "Completed"}, func() string { return string(rr.Status.Phase) }},
		{"workflowexecutions", "WorkflowExecution", wfe, []string{"Running", "Failed"}, func() string { return string(wfe.Status.Phase) }},
	} {
		t.Run(tc.resource, func(t *testing.T) {
			path := objectPath(tc.resource, tc.obj.GetName()) + "/status"
			// The ordinary transitions, written the same raw way.
			for _, phase := range tc.phases {
				code, body := raw.do(ctx, t, http.MethodPatch, path, merge, fmt.Appendf(nil, `{"status":{"phase":%q}}`, phase))
				if code != http.StatusOK {
					t.Fatalf("move to %s: answered %d: %s", phase, code, body)
				}
			}
			if err := cli.Get(ctx, client.ObjectKeyFromObject(tc.obj), tc.obj); err != nil {
				t.Fatalf("get: %v", err)
			}
			terminal := tc.phases[len(tc.phases)-1]

			code, body := raw.do(ctx, t, http.MethodPatch, path, merge, []byte(`{"status":null}`))
			expectRejected(t, `merge patch {"status":null}`, code, body, "a terminal phase is final")

			code, body = raw.do(ctx, t, http.MethodPatch, path, jsonPatch, []byte(`[{"op":"remove","path":"/status"}]`))
			expectRejected(t, "JSON patch removing /status", code, body, "a terminal phase is final")

			code, body = raw.do(ctx, t, http.MethodPut, path, "application/json", withoutStatus(t, tc.kind, tc.obj))
			expectRejected(t, "PUT without status", code, body, "a terminal phase is final")

			code, body = raw.do(ctx, t, http.MethodPatch, path, merge, []byte(`{"status":{"phase":null}}`))
			expectRejected(t, `merge patch {"status":{"phase":null}}`, code, body, "a terminal phase is final")

			if err := cli.Get(ctx, client.ObjectKeyFromObject(tc.obj), tc.obj); err != nil {
				t.Fatalf("get: %v", err)
			}
			if got := tc.phase(); got != terminal {
				t.Fatalf("phase after the rejected writes = %q, want %s", got, terminal)
			}
		})
	}
}
