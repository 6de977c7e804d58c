//go:build integration

package storm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// newStoredRR is a valid RemediationRequest for target, labelled as the
// gateway labels it. fingerprint is normally dedup.Fingerprint(target).
func newStoredRR(name, fingerprint string, target v1alpha1.TargetRef) *v1alpha1.RemediationRequest {
	return &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: rrNamespace,
			Labels: map[string]string{
				v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fingerprint),
				v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(target),
			},
		},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint:  fingerprint,
			SignalName:   AlertName,
			Severity:     "warning",
			Source:       v1alpha1.SourceAlertmanager,
			Target:       target,
			SignalTarget: target,
			ReceivedAt:   metav1.NowMicro(),
		},
	}
}

// storeRR creates rr, then sets its occurrence count through the status
// subresource (a create drops status), and deletes it when the test ends.
func storeRR(t *testing.T, ctx context.Context, rr *v1alpha1.RemediationRequest, count int64) {
	t.Helper()
	if err := admin.Create(ctx, rr); err != nil {
		t.Fatalf("create %s: %v", rr.Name, err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), rr) })
	if count > 1 {
		rr.Status.Deduplication = &v1alpha1.DeduplicationStatus{FirstSeenAt: rr.Spec.ReceivedAt, LastSeenAt: metav1.NowMicro(), OccurrenceCount: count}
		if err := admin.Status().Update(ctx, rr); err != nil {
			t.Fatalf("status update %s: %v", rr.Name, err)
		}
	}
}

// TestVerificationAgainstAPIServer stores RemediationRequests for a run's
// fingerprints as gateways would have written them, some right and some
// wrong, runs the storm against a gateway that writes nothing, and checks
// the verdict per incident.
func TestVerificationAgainstAPIServer(t *testing.T) {
	ctx := testContext(t)
	runID := NewRunID()
	target := func(k int) v1alpha1.TargetRef { return TargetOf(DefaultCluster, DefaultNamespace, runID, k) }
	fp := func(k int) string { return dedup.Fingerprint(target(k)) }

	// Incident 0: one RR, count 2 of 2: right.
	storeRR(t, ctx, newStoredRR(runID+"-0", fp(0), target(0)), 2)
	// Incident 1: two RRs counting 1 each: a duplicate, though the sum is right.
	storeRR(t, ctx, newStoredRR(runID+"-1a", fp(1), target(1)), 1)
	storeRR(t, ctx, newStoredRR(runID+"-1b", fp(1), target(1)), 1)
	// Incident 2: one RR counting 3 of 2 signals sent once each: over.
	storeRR(t, ctx, newStoredRR(runID+"-2", fp(2), target(2)), 3)
	// Incident 3: nothing.
	// An RR whose label equals incident 0's but whose fingerprint differs.
	impostor := fp(0)[:40] + strings.Repeat("f", 24)
	storeRR(t, ctx, newStoredRR(runID+"-x", impostor, target(0)), 7)

	g := newFakeGateway(t, func(int, *http.Request, []byte) reply { return reply{code: http.StatusAccepted} })
	rep, err := Run(ctx, Config{
		Targets: []string{g.URL()}, Signals: 8, Fingerprints: 4, RunID: runID,
		Kube: cp.Config, RRNamespace: rrNamespace, NoAPIMetrics: true,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := Verification{Namespace: rrNamespace, RRsExpected: 4, RRsFound: 4, Duplicates: 1, Missing: 1}
	if v := rep.Verification; v == nil || *v != want {
		t.Fatalf("verification = %+v, want %+v", v, want)
	}
	for k, w := range []struct {
		names []string
		count int64
		exact bool
		bound bool
	}{
		{[]string{runID + "-0"}, 2, true, true},
		{[]string{runID + "-1a", runID + "-1b"}, 2, true, true},
		{[]string{runID + "-2"}, 3, false, false},
		{[]string{}, 0, false, false},
	} {
		f := rep.Incidents[k].Found
		if f == nil || !slices.Equal(f.Names, w.names) || f.OccurrenceCount != w.count || f.CountExact != w.exact || f.BoundsHeld != w.bound {
			t.Errorf("incident %d found %+v, want names %v count %d exact %v bounds %v", k, f, w.names, w.count, w.exact, w.bound)
		}
	}
	err = rep.Check(true)
	if !errors.Is(err, ErrDuplicates) || !errors.Is(err, ErrCountsNotExact) || errors.Is(err, ErrUnacknowledged) {
		t.Errorf("Check = %v, want duplicates and counts, not unacknowledged", err)
	}
}

// writingGateway plays a correct gateway against the real API server: the
// first signal of an incident creates its RR, each later one raises the
// count with one status update. One mutex serialises everything, which is
// what makes it correct; it is a yardstick, not a design.
type writingGateway struct {
	mu  sync.Mutex
	rrs map[string]*v1alpha1.RemediationRequest
}

func (w *writingGateway) respond(_ int, r *http.Request, body []byte) reply {
	var msg webhookMessage
	if err := json.Unmarshal(body, &msg); err != nil || len(msg.Alerts) != 1 {
		return reply{code: http.StatusBadRequest}
	}
	name := msg.Alerts[0].Labels["deployment"]
	target := v1alpha1.TargetRef{Cluster: DefaultCluster, APIVersion: "apps/v1", Kind: "Deployment", Namespace: msg.Alerts[0].Labels["namespace"], Name: name}
	w.mu.Lock()
	defer w.mu.Unlock()
	rr, ok := w.rrs[name]
	if !ok {
		rr = newStoredRR("rr-"+name, dedup.Fingerprint(target), target)
		if err := admin.Create(r.Context(), rr); err != nil {
			return reply{code: http.StatusServiceUnavailable, body: err.Error()}
		}
		w.rrs[name] = rr
		return reply{code: http.StatusCreated, body: fmt.Sprintf(`{"name":%q}`, rr.Name)}
	}
	d := rr.EffectiveDeduplication()
	d.OccurrenceCount++
	d.LastSeenAt = metav1.NowMicro()
	rr.Status.Deduplication = &d
	if err := admin.Status().Update(r.Context(), rr); err != nil {
		return reply{code: http.StatusServiceUnavailable, body: err.Error()}
	}
	return reply{code: http.StatusAccepted, body: fmt.Sprintf(`{"name":%q}`, rr.Name)}
}

func (w *writingGateway) cleanup() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rr := range w.rrs {
		_ = admin.Delete(context.Background(), rr)
	}
}

// TestAPIRequestAccounting runs a storm against a gateway that writes to the
// real API server and checks that scraping /metrics finds exactly its
// writes, with the idle correction on.
func TestAPIRequestAccounting(t *testing.T) {
	ctx := testContext(t)
	runID := NewRunID()
	w := &writingGateway{rrs: map[string]*v1alpha1.RemediationRequest{}}
	t.Cleanup(w.cleanup)
	g := newFakeGateway(t, w.respond)

	start := time.Now()
	rep, err := Run(ctx, Config{
		Targets: []string{g.URL()}, Signals: 10, Fingerprints: 2, Concurrency: 4, RunID: runID,
		Kube: cp.Config, RRNamespace: rrNamespace,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("run %.3fs, whole call %v", rep.DurationSeconds, time.Since(start).Round(time.Millisecond))
	if err := rep.Check(true); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if v := rep.Verification; v.RRsFound != 2 || v.Duplicates != 0 || !v.CountsExact || !v.BoundsHeld {
		t.Errorf("verification = %+v", v)
	}

	a := rep.APIRequests
	if a == nil || a.Error != "" {
		t.Fatalf("api requests = %+v", a)
	}
	var text strings.Builder
	_ = rep.WriteText(&text)
	t.Logf("report:\n%s", text.String())
	if !a.IdleCorrection || a.IdleSeconds < DefaultMinIdle.Seconds() {
		t.Errorf("idle correction %v over %.3fs, want on over at least %v", a.IdleCorrection, a.IdleSeconds, DefaultMinIdle)
	}
	got := map[ResourceVerb]float64{}
	for _, row := range a.ByResourceVerb {
		got[ResourceVerb{row.Resource, row.Verb}] = row.Requests
	}
	// Nothing else writes RemediationRequests, during the run or idle.
	if got[ResourceVerb{"remediationrequests", "POST"}] != 2 || got[ResourceVerb{"remediationrequests/status", "PUT"}] != 8 {
		t.Errorf("requests = %v, want remediationrequests POST 2 and remediationrequests/status PUT 8", got)
	}
}
