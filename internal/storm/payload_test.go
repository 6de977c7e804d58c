package storm

import (
	"testing"
	"time"

	"github.com/leasehold/leasehold/gateway/signal"
)

// TestPayloadsDecodeAsFiringSignals holds the storm to the gateway's own
// decoders: every payload is one firing signal naming incident i's target.
func TestPayloadsDecodeAsFiringSignals(t *testing.T) {
	for _, payload := range []Payload{PayloadAlert, PayloadEvent} {
		c, err := Config{Targets: []string{"http://x"}, Signals: 3, Fingerprints: 3, Payload: payload, Cluster: "c1", Namespace: "ns1", RunID: "p1"}.resolve()
		if err != nil {
			t.Fatal(err)
		}
		incs, err := newIncidents(c, fakeStart)
		if err != nil {
			t.Fatal(err)
		}
		opts := signal.Options{Cluster: "c1"}
		for i, inc := range incs {
			var item signal.Item
			if payload == PayloadAlert {
				items, err := signal.DecodeAlertmanager(inc.body, opts)
				if err != nil || len(items) != 1 {
					t.Fatalf("%s %d: decode = %d items, %v; want 1", payload, i, len(items), err)
				}
				item = items[0]
			} else if item, err = signal.DecodeKubernetesEvent(inc.body, opts); err != nil {
				t.Fatalf("%s %d: decode: %v", payload, i, err)
			}
			if item.Disposition != signal.Fire || item.Signal == nil {
				t.Fatalf("%s %d: disposition %v (%s, %v), want Fire", payload, i, item.Disposition, item.Reason, item.Err)
			}
			if got, want := item.Signal.Target, TargetOf("c1", "ns1", "p1", i); got != want {
				t.Errorf("%s %d: target %+v, want %+v", payload, i, got, want)
			}
			if !item.Signal.FiringTime.Equal(fakeStart.Truncate(time.Second)) {
				t.Errorf("%s %d: firing time %v, want %v", payload, i, item.Signal.FiringTime, fakeStart)
			}
		}
	}
}
