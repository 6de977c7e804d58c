package signal_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/gateway/signal"
)

// addSeeds adds every testdata file whose name starts with prefix.
func addSeeds(f *testing.F, prefix string) {
	f.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no seeds for %q: %v", prefix, err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecodeAlertmanager checks that no payload makes the decoder panic,
// that every error matches ErrInvalid, and that every Item keeps the
// invariants the gateway relies on.
func FuzzDecodeAlertmanager(f *testing.F) {
	addSeeds(f, "alertmanager_")
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","node":"n","cluster":"c"}}]}`))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"resolved","labels":{}},{"status":"x"}]}`))
	opts := signal.Options{Cluster: "fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := signal.DecodeAlertmanager(body, opts)
		if err != nil {
			if !errors.Is(err, signal.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if items != nil {
				t.Fatalf("items %+v returned with error %v", items, err)
			}
			return
		}
		if len(items) == 0 {
			t.Fatal("no items and no error")
		}
		for i, it := range items {
			checkWellFormed(t, it)
			var fe *signal.FieldError
			if errors.As(it.Err, &fe) && !strings.HasPrefix(fe.Field, "alerts[") {
				t.Errorf("item %d: field %q is not a path into alerts", i, fe.Field)
			}
		}
	})
}

// FuzzDecodeKubernetesEvent is FuzzDecodeAlertmanager for events.
func FuzzDecodeKubernetesEvent(f *testing.F) {
	addSeeds(f, "event_")
	f.Add([]byte(`{"apiVersion":"v1","kind":"Event","type":"Warning","reason":"R","involvedObject":{"kind":"Node","name":"n"}}`))
	f.Add([]byte(`{"apiVersion":"events.k8s.io/v1","kind":"Event","type":"Normal","regarding":{"kind":"Widget","name":"w"}}`))
	opts := signal.Options{Cluster: "fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		it, err := signal.DecodeKubernetesEvent(body, opts)
		if err != nil {
			if !errors.Is(err, signal.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		checkWellFormed(t, it)
	})
}
