//go:build integration

package dedup_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// Two fingerprints that agree in their first 20 hex digits are two
// incidents, and each gets a request of its own.
func TestFingerprintsSharingAPrefixGetTheirOwnRequests(t *testing.T) {
	ns := newNamespace(t)
	r := newReplica(t, ns, "gw-0", dedup.LockNone)
	a, b := incidentFor(0), incidentFor(1)
	a.Fingerprint = strings.Repeat("0", 20) + strings.Repeat("a", 44)
	b.Fingerprint = strings.Repeat("0", 20) + strings.Repeat("b", 44)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	for _, in := range []dedup.Incident{a, b} {
		res, err := r.rec.Record(ctx, in)
		if err != nil {
			t.Fatalf("fingerprint %s: %v", in.Fingerprint, err)
		}
		if res.Outcome != dedup.Created || res.OccurrenceCount != 1 {
			t.Fatalf("fingerprint %s: %+v, want a created request", in.Fingerprint, res)
		}
		names = append(names, res.Name)
	}
	if names[0] == names[1] {
		t.Fatalf("both fingerprints answered with request %s", names[0])
	}
	for i, in := range []dedup.Incident{a, b} {
		var rr v1alpha1.RemediationRequest
		if err := getRequest(ctx, ns, names[i], &rr); err != nil {
			t.Fatal(err)
		}
		if rr.Spec.Fingerprint != in.Fingerprint {
			t.Errorf("request %s has fingerprint %s, want %s", names[i], rr.Spec.Fingerprint, in.Fingerprint)
		}
	}
}

// getRequest reads a request from the API server.
func getRequest(ctx context.Context, ns, name string, rr *v1alpha1.RemediationRequest) error {
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, rr)
}

// getRaw reads the request at path as the API server sends it, in the
// representation accept asks for.
func getRaw(ctx context.Context, t *testing.T, path, accept string) []byte {
	t.Helper()
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cp.Config.Host, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as %s: %d %s", path, accept, resp.StatusCode, body)
	}
	return body
}

// occurrenceColumn returns the Count cell of the only row of a Table.
func occurrenceColumn(t *testing.T, body []byte) any {
	t.Helper()
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("decode Table: %v: %s", err, body)
	}
	col := slices.IndexFunc(table.ColumnDefinitions, func(c metav1.TableColumnDefinition) bool { return c.Name == "Count" })
	if col < 0 || len(table.Rows) != 1 || len(table.Rows[0].Cells) <= col {
		t.Fatalf("Table without a Count column or with %d rows: %s", len(table.Rows), body)
	}
	return table.Rows[0].Cells[col]
}

// A request made by a first occurrence shows its count wherever a user
// looks (kubectl get's Count column, -o yaml, -o jsonpath), although the
// create cannot write status and no second write is spent on it. Later
// counts, the orchestrator's status writes and the helpers' reading agree.
func TestFirstOccurrenceShowsItsCount(t *testing.T) {
	ns := newNamespace(t)
	r := newReplica(t, ns, "gw-0", dedup.LockNone)
	in := incidentFor(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Warm the client up (discovery of the API) with another incident, so
	// that the calls counted below are the Recorder's alone.
	if _, err := r.rec.Record(ctx, incidentFor(1)); err != nil {
		t.Fatal(err)
	}
	before := r.calls.total.Load()
	res, err := r.rec.Record(ctx, in)
	if err != nil || res.Outcome != dedup.Created {
		t.Fatalf("first signal: %+v, %v", res, err)
	}
	// A List to find the generation, then the create.
	if calls := r.calls.total.Load() - before; calls != 2 {
		t.Errorf("first occurrence cost %d API calls, want 2 (a List and a create)", calls)
	}
	path := "/apis/" + v1alpha1.GroupVersion.String() + "/namespaces/" + ns + "/remediationrequests/" + res.Name

	var obj struct {
		Status *struct {
			Deduplication *struct {
				OccurrenceCount *int64 `json:"occurrenceCount"`
			} `json:"deduplication"`
		} `json:"status"`
	}
	body := getRaw(ctx, t, path, "application/json")
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Status == nil || obj.Status.Deduplication == nil || obj.Status.Deduplication.OccurrenceCount == nil || *obj.Status.Deduplication.OccurrenceCount != 1 {
		t.Fatalf("status.deduplication.occurrenceCount of a new request is not 1: %s", body)
	}
	const asTable = "application/json;as=Table;v=v1;g=meta.k8s.io"
	if got := occurrenceColumn(t, getRaw(ctx, t, path, asTable)); got != float64(1) {
		t.Fatalf("Count column of a new request = %v, want 1", got)
	}

	var rr v1alpha1.RemediationRequest
	if err := getRequest(ctx, ns, res.Name, &rr); err != nil {
		t.Fatal(err)
	}
	d := rr.EffectiveDeduplication()
	if d.OccurrenceCount != 1 || !d.FirstSeenAt.Equal(&rr.Spec.ReceivedAt) || !d.LastSeenAt.Equal(&rr.Spec.ReceivedAt) ||
		!slices.Equal(d.SignalNames, []string{in.Signal.Name}) {
		t.Fatalf("EffectiveDeduplication of a new request = %+v, want one %s at %v", d, in.Signal.Name, rr.Spec.ReceivedAt)
	}

	// The orchestrator's kind of status write: a merge patch of its own
	// fields, under the resourceVersion it read.
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	base := rr.DeepCopy()
	rr.Status.Phase = v1alpha1.PhaseBlocked
	rr.Status.BlockReason = v1alpha1.BlockReasonResourceBusy
	if err := c.Status().Patch(ctx, &rr, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		t.Fatalf("orchestrator status write: %v", err)
	}

	second := in
	second.ReceivedAt = time.Now()
	if res, err := r.rec.Record(ctx, second); err != nil || res.Outcome != dedup.Duplicate || res.OccurrenceCount != 2 {
		t.Fatalf("second signal: %+v, %v; want a duplicate counted 2", res, err)
	}
	if got := occurrenceColumn(t, getRaw(ctx, t, path, asTable)); got != float64(2) {
		t.Fatalf("Count column after a second signal = %v, want 2", got)
	}
	if err := getRequest(ctx, ns, res.Name, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Status.Phase != v1alpha1.PhaseBlocked || rr.EffectiveDeduplication().OccurrenceCount != 2 {
		t.Fatalf("after both writers: phase %q count %d, want Blocked and 2", rr.Status.Phase, rr.EffectiveDeduplication().OccurrenceCount)
	}
	if d := rr.Status.Deduplication; d == nil || !d.FirstSeenAt.Equal(&rr.Spec.ReceivedAt) {
		t.Fatalf("firstSeenAt after the first count update = %+v, want receivedAt %v", d, rr.Spec.ReceivedAt)
	}
}
