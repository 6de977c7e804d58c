package signal_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/signal"
)

func TestDecodeKubernetesEventTestdata(t *testing.T) {
	tests := []struct {
		file string
		want signal.Item
	}{
		{"event_core_pod_warning.json", signal.Item{Disposition: signal.Fire, Signal: &signal.Signal{
			Source:   v1alpha1.SourceKubernetesEvent,
			Name:     "BackOff",
			Severity: "warning",
			Target: v1alpha1.TargetRef{
				Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod",
				Namespace: "payments", Name: "payments-api-7d9f8b6c5-x2kqp",
			},
			// eventTime is null: firstTimestamp.
			FiringTime:  time.Date(2026, 3, 14, 9, 21, 7, 0, time.UTC),
			Labels:      map[string]string{"reason": "BackOff", "type": "Warning", "reportingController": "kubelet"},
			Annotations: map[string]string{"message": "Back-off restarting failed container api in pod payments-api-7d9f8b6c5-x2kqp_payments(5f1c2a6e-8d3b-4a8e-9c1f-2b7e6d4a9f10)"},
		}}},
		{"event_core_pod_normal.json", signal.Item{Disposition: signal.Ignore, Reason: "normal event", Signal: &signal.Signal{
			Source:   v1alpha1.SourceKubernetesEvent,
			Name:     "Pulled",
			Severity: "normal",
			Target: v1alpha1.TargetRef{
				Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod",
				Namespace: "payments", Name: "payments-api-7d9f8b6c5-x2kqp",
			},
			FiringTime:  time.Date(2026, 3, 14, 9, 20, 51, 0, time.UTC),
			Labels:      map[string]string{"reason": "Pulled", "type": "Normal", "reportingController": "kubelet"},
			Annotations: map[string]string{"message": `Container image "registry.example.com/payments/api:1.42.0" already present on machine`},
		}}},
		{"event_core_node_warning.json", signal.Item{Disposition: signal.Fire, Signal: &signal.Signal{
			Source:   v1alpha1.SourceKubernetesEvent,
			Name:     "SystemOOM",
			Severity: "warning",
			// The kubelet leaves apiVersion and namespace out of Node
			// references; the event's own namespace ("default") is not
			// the object's.
			Target:      v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Node", Name: "worker-3"},
			FiringTime:  time.Date(2026, 3, 14, 13, 5, 12, 0, time.UTC),
			Labels:      map[string]string{"reason": "SystemOOM", "type": "Warning", "reportingController": "kubelet"},
			Annotations: map[string]string{"message": "System OOM encountered, victim process: java, pid: 48213"},
		}}},
		{"event_events_node_warning.json", signal.Item{Disposition: signal.Fire, Signal: &signal.Signal{
			Source:      v1alpha1.SourceKubernetesEvent,
			Name:        "EvictionThresholdMet",
			Severity:    "warning",
			Target:      v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Node", Name: "worker-1"},
			FiringTime:  time.Date(2026, 3, 14, 13, 20, 44, 512034e3, time.UTC),
			Labels:      map[string]string{"reason": "EvictionThresholdMet", "type": "Warning", "reportingController": "kubelet"},
			Annotations: map[string]string{"message": "Attempting to reclaim memory"},
		}}},
		{"event_events_pod_normal.json", signal.Item{Disposition: signal.Ignore, Reason: "normal event", Signal: &signal.Signal{
			Source:   v1alpha1.SourceKubernetesEvent,
			Name:     "Scheduled",
			Severity: "normal",
			Target: v1alpha1.TargetRef{
				Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod",
				Namespace: "shop", Name: "checkout-5b7c9d8f4-qv6zt",
			},
			FiringTime:  time.Date(2026, 3, 14, 13, 31, 9, 104211e3, time.UTC),
			Labels:      map[string]string{"reason": "Scheduled", "type": "Normal", "reportingController": "default-scheduler"},
			Annotations: map[string]string{"message": "Successfully assigned shop/checkout-5b7c9d8f4-qv6zt to worker-2"},
		}}},
		{"event_events_pod_warning.json", signal.Item{Disposition: signal.Fire, Signal: &signal.Signal{
			Source:   v1alpha1.SourceKubernetesEvent,
			Name:     "FailedMount",
			Severity: "warning",
			Target: v1alpha1.TargetRef{
				Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod",
				Namespace: "shop", Name: "orders-db-0",
			},
			// eventTime is null: deprecatedFirstTimestamp.
			FiringTime: time.Date(2026, 3, 14, 13, 40, 0, 0, time.UTC),
			// reportingController is empty: deprecatedSource.component.
			Labels:      map[string]string{"reason": "FailedMount", "type": "Warning", "reportingController": "kubelet"},
			Annotations: map[string]string{"message": `MountVolume.SetUp failed for volume "data" : rpc error: code = Internal desc = volume attachment is being deleted`},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			it, err := signal.DecodeKubernetesEvent(readTestdata(t, tt.file), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			checkWellFormed(t, it)
			if !reflect.DeepEqual(it, tt.want) {
				t.Errorf("item =\n%+v\n%+v\nwant\n%+v\n%+v", it, it.Signal, tt.want, tt.want.Signal)
			}
		})
	}
}

// coreEvent returns a valid core/v1 Warning event about Pod ns/web-0 as a
// generic object, for tests to break.
func coreEvent() map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata":   map[string]any{"name": "web-0.1", "namespace": "ns"},
		"type":       "Warning",
		"reason":     "BackOff",
		"message":    "Back-off restarting failed container",
		"involvedObject": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "namespace": "ns", "name": "web-0",
		},
		"source":         map[string]any{"component": "kubelet"},
		"firstTimestamp": "2026-03-14T09:00:00Z",
	}
}

// eventsEvent is coreEvent in the events.k8s.io/v1 shape.
func eventsEvent() map[string]any {
	return map[string]any{
		"apiVersion": "events.k8s.io/v1",
		"kind":       "Event",
		"metadata":   map[string]any{"name": "web-0.1", "namespace": "ns"},
		"type":       "Warning",
		"reason":     "BackOff",
		"note":       "Back-off restarting failed container",
		"regarding": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "namespace": "ns", "name": "web-0",
		},
		"reportingController": "kubelet",
		"eventTime":           "2026-03-14T09:00:00.000000Z",
	}
}

// with sets path (dot-separated) in obj to v, or deletes it when v is nil.
func with(obj map[string]any, path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	m := obj
	for _, k := range keys[:len(keys)-1] {
		m = m[k].(map[string]any)
	}
	if v == nil {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = v
	}
	return obj
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeKubernetesEventRejects(t *testing.T) {
	tests := []struct {
		name  string
		event map[string]any
		field string
	}{
		{"no type", with(coreEvent(), "type", nil), "type"},
		{"type Error", with(coreEvent(), "type", "Error"), "type"},
		{"type lower case", with(coreEvent(), "type", "warning"), "type"},
		{"no reason", with(coreEvent(), "reason", nil), "reason"},
		{"reason too long", with(coreEvent(), "reason", strings.Repeat("R", 254)), "reason"},
		{"no kind", with(coreEvent(), "involvedObject.kind", nil), "involvedObject.kind"},
		{"kind not a kind", with(coreEvent(), "involvedObject.kind", "pod"), "involvedObject.kind"},
		{"no name", with(coreEvent(), "involvedObject.name", nil), "involvedObject.name"},
		{"name invalid", with(coreEvent(), "involvedObject.name", "Web_0"), "involvedObject.name"},
		{"namespace invalid", with(coreEvent(), "involvedObject.namespace", "a.b"), "involvedObject.namespace"},
		{"apiVersion invalid", with(coreEvent(), "involvedObject.apiVersion", "apps/v1/x"), "involvedObject.apiVersion"},
		{
			"apiVersion missing for unknown kind",
			with(with(coreEvent(), "involvedObject.apiVersion", nil), "involvedObject.kind", "Widget"),
			"involvedObject.apiVersion",
		},
		{"events: no type", with(eventsEvent(), "type", nil), "type"},
		{"events: no reason", with(eventsEvent(), "reason", ""), "reason"},
		{"events: no kind", with(eventsEvent(), "regarding.kind", nil), "regarding.kind"},
		{"events: no name", with(eventsEvent(), "regarding.name", nil), "regarding.name"},
		{"events: namespace invalid", with(eventsEvent(), "regarding.namespace", "NS"), "regarding.namespace"},
		{"events: apiVersion invalid", with(eventsEvent(), "regarding.apiVersion", "/v1"), "regarding.apiVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := signal.DecodeKubernetesEvent(marshal(t, tt.event), testOptions)
			if err != nil {
				t.Fatalf("payload error %v, want a rejected item", err)
			}
			checkRejected(t, it, tt.field)
		})
	}
}

func TestDecodeKubernetesEventFires(t *testing.T) {
	tests := []struct {
		name       string
		event      map[string]any
		wantTarget v1alpha1.TargetRef
		wantFiring time.Time
		wantCtrl   string // "" when no reportingController label is expected
	}{
		{
			"core", coreEvent(),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "kubelet",
		},
		{
			"core: eventTime before firstTimestamp", with(coreEvent(), "eventTime", "2026-03-14T08:59:59.123456Z"),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 8, 59, 59, 123456e3, time.UTC), "kubelet",
		},
		{
			// core/v1 spells reportingController "reportingComponent".
			"core: reportingComponent before source", with(coreEvent(), "reportingComponent", "example.com/operator"),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "example.com/operator",
		},
		{
			"core: no timestamps, no source", with(with(coreEvent(), "firstTimestamp", nil), "source", nil),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Time{}, "",
		},
		{
			"core: custom resource", with(with(coreEvent(), "involvedObject.apiVersion", "example.com/v1beta1"), "involvedObject.kind", "Widget"),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "example.com/v1beta1", Kind: "Widget", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "kubelet",
		},
		{
			"core: apiVersion inferred", with(with(coreEvent(), "involvedObject.apiVersion", nil), "involvedObject.kind", "Deployment"),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "kubelet",
		},
		{
			// The event's word on scope is trusted.
			"core: namespace as given", with(coreEvent(), "involvedObject.namespace", nil),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "kubelet",
		},
		{
			"events", eventsEvent(),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC), "kubelet",
		},
		{
			"events: deprecatedFirstTimestamp", with(with(eventsEvent(), "eventTime", nil), "deprecatedFirstTimestamp", "2026-03-14T07:00:00Z"),
			v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			time.Date(2026, 3, 14, 7, 0, 0, 0, time.UTC), "kubelet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := signal.DecodeKubernetesEvent(marshal(t, tt.event), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			checkWellFormed(t, it)
			if it.Disposition != signal.Fire {
				t.Fatalf("disposition %v (%v), want fire", it.Disposition, it.Err)
			}
			s := it.Signal
			if s.Target != tt.wantTarget || !s.FiringTime.Equal(tt.wantFiring) || s.FiringTime.IsZero() != tt.wantFiring.IsZero() {
				t.Errorf("got target %+v firing %v, want %+v %v", s.Target, s.FiringTime, tt.wantTarget, tt.wantFiring)
			}
			ctrl, ok := s.Labels["reportingController"]
			if ctrl != tt.wantCtrl || ok != (tt.wantCtrl != "") {
				t.Errorf("reportingController label %q (present %v), want %q", ctrl, ok, tt.wantCtrl)
			}
			if s.Name != "BackOff" || s.Severity != "warning" {
				t.Errorf("name %q severity %q, want BackOff warning", s.Name, s.Severity)
			}
		})
	}
}

func TestDecodeKubernetesEventMessageBound(t *testing.T) {
	// 700 two-byte runes: 1400 bytes, cut to at most 1024 without
	// splitting a rune.
	msg := strings.Repeat("é", 700)
	for _, ev := range []map[string]any{with(coreEvent(), "message", msg), with(eventsEvent(), "note", msg)} {
		it, err := signal.DecodeKubernetesEvent(marshal(t, ev), testOptions)
		if err != nil {
			t.Fatal(err)
		}
		got := it.Signal.Annotations["message"]
		if len(got) != 1024 || !utf8.ValidString(got) || !strings.HasPrefix(msg, got) {
			t.Errorf("message of %d bytes (valid UTF-8 %v), want a 1024-byte prefix", len(got), utf8.ValidString(got))
		}
	}
}

func TestDecodeKubernetesEventNormalInvalid(t *testing.T) {
	ev := with(with(coreEvent(), "type", "Normal"), "involvedObject.name", nil)
	it, err := signal.DecodeKubernetesEvent(marshal(t, ev), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, it)
	if it.Disposition != signal.Ignore || it.Reason != "normal event" || it.Signal != nil {
		t.Errorf("got %v %q signal %+v, want ignore %q without a signal", it.Disposition, it.Reason, it.Signal, "normal event")
	}
}

func TestDecodeKubernetesEventPayloadErrors(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		opts  signal.Options
		field string // "" when the error names no field
	}{
		{"empty body", ``, testOptions, ""},
		{"truncated", `{"apiVersion":"v1",`, testOptions, ""},
		{"not an object", `"Event"`, testOptions, ""},
		{"bad timestamp", `{"apiVersion":"v1","kind":"Event","firstTimestamp":"today"}`, testOptions, ""},
		{"field of wrong type", `{"apiVersion":"v1","kind":"Event","count":"many"}`, testOptions, "count"},
		{"reference of wrong type", `{"apiVersion":"events.k8s.io/v1","kind":"Event","regarding":{"name":1}}`, testOptions, "regarding.name"},
		{"null", `null`, testOptions, "apiVersion"},
		{"empty object", `{}`, testOptions, "apiVersion"},
		{"no apiVersion", `{"kind":"Event","type":"Warning"}`, testOptions, "apiVersion"},
		{"apiVersion v2", `{"apiVersion":"v2","kind":"Event"}`, testOptions, "apiVersion"},
		{"events.k8s.io/v1beta1", `{"apiVersion":"events.k8s.io/v1beta1","kind":"Event"}`, testOptions, "apiVersion"},
		{"keys are case-sensitive", `{"APIVersion":"v1","Kind":"Event"}`, testOptions, "apiVersion"},
		{"no kind", `{"apiVersion":"v1","type":"Warning"}`, testOptions, "kind"},
		{"kind Pod", `{"apiVersion":"v1","kind":"Pod"}`, testOptions, "kind"},
		{"kind EventList", `{"apiVersion":"events.k8s.io/v1","kind":"EventList","items":[]}`, testOptions, "kind"},
		{"no cluster", `{"apiVersion":"v1","kind":"Event"}`, signal.Options{}, "Options.Cluster"},
		{"cluster invalid", `{"apiVersion":"v1","kind":"Event"}`, signal.Options{Cluster: "a_b"}, "Options.Cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := signal.DecodeKubernetesEvent([]byte(tt.body), tt.opts)
			if !reflect.DeepEqual(it, signal.Item{}) {
				t.Errorf("got item %+v with error %v", it, err)
			}
			checkInvalid(t, err, tt.field)
		})
	}
}
