//go:build integration

package dedup_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
