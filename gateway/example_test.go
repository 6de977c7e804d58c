package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/gateway/dedup"
)

// counter is a Deduplicator in memory, for the example.
type counter struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (c *counter) Record(_ context.Context, in dedup.Incident) (dedup.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[in.Fingerprint]++
	res := dedup.Result{Outcome: dedup.Duplicate, Name: "rr-" + in.Fingerprint[:8], OccurrenceCount: c.counts[in.Fingerprint]}
	if res.OccurrenceCount == 1 {
		res.Outcome = dedup.Created
	}
	return res, nil
}

// A webhook with one firing alert creates a request; the same alert again
// joins it.
func Example() {
	srv, err := gateway.New(gateway.Config{
		Dedup:          &counter{counts: map[string]int64{}},
		Cluster:        "prod",
		InsecureNoAuth: true, // for the example; use TokenReviewer in production
	})
	if err != nil {
		panic(err)
	}
	const webhook = `{"version": "4", "alerts": [{"status": "firing",
		"labels": {"alertname": "KubePodNotReady", "namespace": "shop", "pod": "checkout-1"}}]}`
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, gateway.PathAlertmanager, strings.NewReader(webhook))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		var res gateway.Result
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			panic(err)
		}
		fmt.Println(rec.Code, res.Outcome, res.OccurrenceCount)
	}
	// Output:
	// 201 created 1
	// 202 duplicate 2
}
