package signal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/leasehold/leasehold/gateway/signal"
)

// testOptions is the configuration most tests decode with.
var testOptions = signal.Options{Cluster: "test-cluster"}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkInvalid asserts that err is a decoding error: it matches ErrInvalid
// and, when field is non-empty, is a *FieldError on exactly that field; when
// field is empty, no *FieldError is in the chain.
func checkInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one on field %q", field)
	}
	if !errors.Is(err, signal.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var fe *signal.FieldError
	switch {
	case field == "" && errors.As(err, &fe):
		t.Errorf("error %v carries a FieldError on %q, want none", err, fe.Field)
	case field != "" && !errors.As(err, &fe):
		t.Errorf("error %v is not a *FieldError, want one on %q", err, field)
	case field != "" && fe.Field != field:
		t.Errorf("error field = %q (%v), want %q", fe.Field, err, field)
	}
}

// checkRejected asserts that it is a Reject whose Err is a *FieldError on
// exactly field.
func checkRejected(t *testing.T, it signal.Item, field string) {
	t.Helper()
	if it.Disposition != signal.Reject {
		t.Fatalf("disposition = %v (signal %+v), want reject on %q", it.Disposition, it.Signal, field)
	}
	if it.Signal != nil {
		t.Errorf("rejected item has a Signal: %+v", it.Signal)
	}
	if _, ok := it.Err.(*signal.FieldError); !ok {
		t.Errorf("Err = %T %v, want *signal.FieldError", it.Err, it.Err)
	}
	checkInvalid(t, it.Err, field)
}

// checkWellFormed asserts the invariants every Item keeps, whatever the
// input: what the gateway relies on without checking.
func checkWellFormed(t testing.TB, it signal.Item) {
	t.Helper()
	switch it.Disposition {
	case signal.Fire:
		if it.Signal == nil {
			t.Fatalf("fire item without a Signal: %+v", it)
		}
		checkSignal(t, it.Signal)
		if it.Err != nil {
			t.Errorf("fire item with Err %v", it.Err)
		}
	case signal.Ignore:
		if it.Reason == "" {
			t.Errorf("ignore item without a Reason: %+v", it)
		}
		if it.Signal != nil {
			checkSignal(t, it.Signal)
		}
		if it.Err != nil {
			t.Errorf("ignore item with Err %v", it.Err)
		}
	case signal.Reject:
		var fe *signal.FieldError
		if !errors.As(it.Err, &fe) || fe.Field == "" {
			t.Errorf("reject item Err = %v, want a *FieldError naming a field", it.Err)
		}
		if !errors.Is(it.Err, signal.ErrInvalid) {
			t.Errorf("reject item Err %v does not match ErrInvalid", it.Err)
		}
		if it.Signal != nil {
			t.Errorf("reject item with a Signal: %+v", it.Signal)
		}
	default:
		t.Errorf("unknown disposition %v", it.Disposition)
	}
}

func checkSignal(t testing.TB, s *signal.Signal) {
	t.Helper()
	if s.Name == "" || len(s.Name) > 253 {
		t.Errorf("signal name %q: want 1 to 253 bytes", s.Name)
	}
	if len(s.Severity) > 63 {
		t.Errorf("severity of %d bytes, want at most 63", len(s.Severity))
	}
	tr := s.Target
	if tr.Kind == "" || tr.Name == "" || tr.Cluster == "" || tr.APIVersion == "" {
		t.Errorf("incomplete target %+v", tr)
	}
	if s.Source != "alertmanager" && s.Source != "kubernetes-event" {
		t.Errorf("source = %q", s.Source)
	}
	for what, m := range map[string]map[string]string{"labels": s.Labels, "annotations": s.Annotations} {
		if len(m) > 64 {
			t.Errorf("%d %s, want at most 64", len(m), what)
		}
		for k, v := range m {
			if len(k) > 128 || len(v) > 1024 {
				t.Errorf("%s entry of %d+%d bytes exceeds the bounds", what, len(k), len(v))
			}
		}
	}
}
