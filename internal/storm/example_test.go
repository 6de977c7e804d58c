package storm_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/leasehold/leasehold/internal/storm"
)

// A storm of 100 identical alerts against a gateway that creates one
// RemediationRequest and absorbs the other 99 as duplicates.
func ExampleRun() {
	var seen atomic.Int64
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 1 {
			w.WriteHeader(http.StatusCreated)
		} else {
			w.WriteHeader(http.StatusAccepted)
		}
		fmt.Fprint(w, `{"name":"rr-1"}`)
	}))
	defer gw.Close()

	rep, err := storm.Run(context.Background(), storm.Config{Targets: []string{gw.URL}, Signals: 100, RunID: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Outcomes, rep.Incidents[0].Target, rep.Incidents[0].NamesAnswered)
	fmt.Println(rep.Check(true))
	// Output:
	// map[201:1 202:99] storm-example-0 [rr-1]
	// <nil>
}
