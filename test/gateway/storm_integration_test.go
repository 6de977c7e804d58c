//go:build integration

package gateway_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/storm"
)

// stormOver runs `leasehold storm`'s engine against the gateways and fails
// the test unless every signal was acknowledged, no incident has two
// requests and every count is exact.
func stormOver(t *testing.T, gws []*gatewayProcess, ns string, signals, fingerprints int) *storm.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := storm.Run(ctx, storm.Config{
		Targets:      urls(gws),
		Signals:      signals,
		Fingerprints: fingerprints,
		Concurrency:  min(signals, 100),
		Kube:         cp.Config,
		RRNamespace:  ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	t.Logf("storm report:\n%s", text.String())
	if err := rep.Check(true); err != nil {
		t.Fatalf("storm check: %v", err)
	}
	if rep.Verification == nil {
		t.Fatal("the storm did not verify the requests")
	}
	return rep
}

func TestStormOfIdenticalAlertsOverThreeGatewayProcesses(t *testing.T) {
	ns := newNamespace(t, "storm")
	gws := startGateways(t, ns, 3, "--insecure-no-auth")
	rep := stormOver(t, gws, ns, 100, 1)
	if rep.Outcomes["201"] != 1 || rep.Outcomes["202"] != 99 {
		t.Errorf("outcomes %v, want one 201 and ninety-nine 202", rep.Outcomes)
	}
	if rep.APIRequests != nil && rep.APIRequests.Error == "" {
		t.Logf("API requests per signal: %.2f", rep.APIRequests.PerSignal)
	}
}

func TestStormOverTwentyIncidentsOverThreeGatewayProcesses(t *testing.T) {
	ns := newNamespace(t, "storm")
	gws := startGateways(t, ns, 3, "--insecure-no-auth")
	rep := stormOver(t, gws, ns, 1000, 20)
	if rep.Outcomes["201"] != 20 || rep.Outcomes["202"] != 980 {
		t.Errorf("outcomes %v, want 20 201s and 980 202s", rep.Outcomes)
	}
}
