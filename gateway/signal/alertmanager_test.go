package signal_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/signal"
)

func TestDecodeAlertmanagerPodFiring(t *testing.T) {
	items, err := signal.DecodeAlertmanager(readTestdata(t, "alertmanager_pod_firing.json"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("got %d items, want 1", len(items))
	}
	want := signal.Item{
		Disposition: signal.Fire,
		Signal: &signal.Signal{
			Source:   v1alpha1.SourceAlertmanager,
			Name:     "KubePodCrashLooping",
			Severity: "warning",
			// The cluster label overrides Options.Cluster.
			Target: v1alpha1.TargetRef{
				Cluster: "prod-eu-1", APIVersion: "v1", Kind: "Pod",
				Namespace: "payments", Name: "payments-api-7d9f8b6c5-x2kqp",
			},
			FiringTime: time.Date(2026, 3, 14, 9, 26, 53, 589e6, time.UTC),
			Labels: map[string]string{
				"alertname": "KubePodCrashLooping",
				"cluster":   "prod-eu-1",
				"container": "api",
				"job":       "kube-state-metrics",
				"namespace": "payments",
				"pod":       "payments-api-7d9f8b6c5-x2kqp",
				"reason":    "CrashLoopBackOff",
				"severity":  "warning",
				"uid":       "5f1c2a6e-8d3b-4a8e-9c1f-2b7e6d4a9f10",
			},
			Annotations: map[string]string{
				"description": `Pod payments/payments-api-7d9f8b6c5-x2kqp (api) is in waiting state (reason: "CrashLoopBackOff").`,
				"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
				"summary":     "Pod is crash looping.",
			},
		},
	}
	if !reflect.DeepEqual(items[0], want) {
		t.Errorf("item =\n%+v\n%+v\nwant\n%+v\n%+v", items[0], items[0].Signal, want, want.Signal)
	}
}

// TestDecodeAlertmanagerTestdata checks each payload in testdata item by
// item.
func TestDecodeAlertmanagerTestdata(t *testing.T) {
	type want struct {
		disposition signal.Disposition
		reason      string
		name        string // "" when no Signal is expected
		severity    string
		target      v1alpha1.TargetRef
		firingTime  time.Time
		field       string // for Reject
	}
	target := func(apiVersion, kind, ns, name string) v1alpha1.TargetRef {
		return v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name}
	}
	tests := []struct {
		file string
		want []want
	}{
		{"alertmanager_batch_mixed.json", []want{
			{
				disposition: signal.Fire, name: "KubeDeploymentReplicasMismatch", severity: "warning",
				target:     target("apps/v1", "Deployment", "shop", "checkout"),
				firingTime: time.Date(2026, 3, 14, 10, 2, 11, 120e6, time.UTC),
			},
			{
				disposition: signal.Ignore, reason: "alert resolved",
				name: "KubePodNotReady", severity: "warning",
				target:     target("v1", "Pod", "shop", "checkout-5b7c9d8f4-qv6zt"),
				firingTime: time.Date(2026, 3, 14, 9, 40, 0, 0, time.UTC),
			},
			{
				disposition: signal.Fire, name: "KubeStatefulSetReplicasMismatch", severity: "critical",
				target: target("apps/v1", "StatefulSet", "shop", "orders-db"),
				// Sent as +02:00, returned in UTC.
				firingTime: time.Date(2026, 3, 14, 8, 4, 30, 0, time.UTC),
			},
		}},
		{"alertmanager_node.json", []want{{
			disposition: signal.Fire, name: "KubeNodeNotReady", severity: "warning",
			// The alert's namespace label is kube-state-metrics' own and
			// must not leak into a cluster-scoped target.
			target:     target("v1", "Node", "", "worker-1"),
			firingTime: time.Date(2026, 3, 14, 11, 15, 0, 0, time.UTC),
		}}},
		{"alertmanager_ksm_job.json", []want{{
			disposition: signal.Fire, name: "KubeJobFailed", severity: "warning",
			// job_name, not job (which is "kube-state-metrics").
			target:     target("batch/v1", "Job", "backups", "nightly-backup-29563740"),
			firingTime: time.Date(2026, 3, 14, 2, 17, 41, 31e6, time.UTC),
		}}},
		{"alertmanager_batch_invalid.json", []want{
			{
				disposition: signal.Fire, name: "KubeDaemonSetRolloutStuck", severity: "warning",
				target:     target("apps/v1", "DaemonSet", "logging", "fluent-bit"),
				firingTime: time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC),
			},
			{disposition: signal.Reject, field: "alerts[1].labels.namespace"},
			{disposition: signal.Reject, field: "alerts[2].labels.pod"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			items, err := signal.DecodeAlertmanager(readTestdata(t, tt.file), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != len(tt.want) {
				t.Fatalf("got %d items, want %d", len(items), len(tt.want))
			}
			for i, w := range tt.want {
				it := items[i]
				checkWellFormed(t, it)
				if w.disposition == signal.Reject {
					checkRejected(t, it, w.field)
					continue
				}
				if it.Disposition != w.disposition || it.Reason != w.reason {
					t.Errorf("item %d: disposition %v reason %q, want %v %q", i, it.Disposition, it.Reason, w.disposition, w.reason)
				}
				s := it.Signal
				if s == nil {
					t.Fatalf("item %d: no signal", i)
				}
				if s.Name != w.name || s.Severity != w.severity || s.Target != w.target || !s.FiringTime.Equal(w.firingTime) {
					t.Errorf("item %d: got name %q severity %q target %+v firing %v\nwant name %q severity %q target %+v firing %v",
						i, s.Name, s.Severity, s.Target, s.FiringTime, w.name, w.severity, w.target, w.firingTime)
				}
				if s.FiringTime.Location() != time.UTC {
					t.Errorf("item %d: firing time %v not in UTC", i, s.FiringTime)
				}
			}
		})
	}
}

// alert is a webhook alert for payloads built in tests.
type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    string            `json:"startsAt,omitempty"`
}

// webhook builds a version 4 payload around alerts.
func webhook(t *testing.T, alerts ...alert) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"version":  "4",
		"receiver": "leasehold",
		"status":   "firing",
		"alerts":   alerts,
		"groupKey": "{}:{}",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firing returns a valid firing alert about Pod ns/web-0 with labels kv
// (name, value pairs) added; a value of "" removes the label.
func firing(kv ...string) alert {
	labels := map[string]string{
		"alertname": "PodDown",
		"namespace": "ns",
		"pod":       "web-0",
		"severity":  "critical",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(labels, kv[i])
		} else {
			labels[kv[i]] = kv[i+1]
		}
	}
	return alert{Status: "firing", Labels: labels, StartsAt: "2026-03-14T09:00:00Z"}
}

func TestDecodeAlertmanagerRejectsAlert(t *testing.T) {
	withStatus := func(a alert, status string) alert { a.Status = status; return a }
	tests := []struct {
		name  string
		alert alert
		opts  signal.Options
		field string
	}{
		{"status pending", withStatus(firing(), "pending"), testOptions, "alerts[1].status"},
		{"status missing", withStatus(firing(), ""), testOptions, "alerts[1].status"},
		{"status capitalised", withStatus(firing(), "Firing"), testOptions, "alerts[1].status"},
		{"no alertname", firing("alertname", ""), testOptions, "alerts[1].labels.alertname"},
		{"alertname too long", firing("alertname", strings.Repeat("A", 254)), testOptions, "alerts[1].labels.alertname"},
		{"no target label", firing("pod", "", "instance", "10.0.0.1:9100"), testOptions, "alerts[1].labels"},
		{"only the scrape job", firing("pod", "", "job", "node-exporter"), testOptions, "alerts[1].labels"},
		{"no namespace", firing("namespace", ""), testOptions, "alerts[1].labels.namespace"},
		{"exported_namespace only", firing("namespace", "", "exported_namespace", "ns"), testOptions, "alerts[1].labels.namespace"},
		{"namespace invalid", firing("namespace", "Team_A"), testOptions, "alerts[1].labels.namespace"},
		{"pod name invalid", firing("pod", "web_0"), testOptions, "alerts[1].labels.pod"},
		{"deployment name invalid", firing("pod", "", "deployment", "Web"), testOptions, "alerts[1].labels.deployment"},
		{"job_name invalid", firing("pod", "", "job_name", "backup."), testOptions, "alerts[1].labels.job_name"},
		{"cluster label invalid", firing("cluster", "Prod_EU"), testOptions, "alerts[1].labels.cluster"},
		{"cluster label too long", firing("cluster", strings.Repeat("c", 64)), testOptions, "alerts[1].labels.cluster"},
		{
			"custom cluster label invalid", firing("k8s_cluster", "prod/eu"),
			signal.Options{Cluster: "test-cluster", ClusterLabel: "k8s_cluster"}, "alerts[1].labels.k8s_cluster",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid alert first: one bad alert does not fail the others,
			// and paths carry the index.
			items, err := signal.DecodeAlertmanager(webhook(t, firing(), tt.alert), tt.opts)
			if err != nil {
				t.Fatalf("payload error %v, want a rejected entry", err)
			}
			if len(items) != 2 {
				t.Fatalf("got %d items, want 2", len(items))
			}
			if items[0].Disposition != signal.Fire {
				t.Errorf("valid alert: disposition %v (%v), want fire", items[0].Disposition, items[0].Err)
			}
			checkRejected(t, items[1], tt.field)
		})
	}
}

func TestDecodeAlertmanagerFires(t *testing.T) {
	tests := []struct {
		name        string
		alert       alert
		opts        signal.Options
		wantTarget  v1alpha1.TargetRef
		wantSev     string
		wantFiring  time.Time
		wantNoLabel string // a label the Signal must not carry
	}{
		{
			name: "cluster from Options", alert: firing(), opts: testOptions,
			wantTarget: v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			wantSev:    "critical", wantFiring: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC),
		},
		{
			name: "cluster from label", alert: firing("cluster", "eu-1.example"), opts: testOptions,
			wantTarget: v1alpha1.TargetRef{Cluster: "eu-1.example", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			wantSev:    "critical", wantFiring: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC),
		},
		{
			name: "custom cluster label", alert: firing("cluster", "ignored", "k8s_cluster", "eu-2"),
			opts:       signal.Options{Cluster: "test-cluster", ClusterLabel: "k8s_cluster"},
			wantTarget: v1alpha1.TargetRef{Cluster: "eu-2", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			wantSev:    "critical", wantFiring: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC),
		},
		{
			name: "no startsAt, no severity", alert: func() alert { a := firing("severity", ""); a.StartsAt = ""; return a }(),
			opts:       testOptions,
			wantTarget: v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
		},
		{
			name: "severity cut to 63 bytes", alert: firing("severity", strings.Repeat("s", 100)), opts: testOptions,
			wantTarget: v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			wantSev:    strings.Repeat("s", 63), wantFiring: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC),
		},
		{
			name: "oversized label key dropped", alert: firing(strings.Repeat("k", 129), "v"), opts: testOptions,
			wantTarget: v1alpha1.TargetRef{Cluster: "test-cluster", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-0"},
			wantSev:    "critical", wantFiring: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC),
			wantNoLabel: strings.Repeat("k", 129),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := signal.DecodeAlertmanager(webhook(t, tt.alert), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			it := items[0]
			checkWellFormed(t, it)
			if it.Disposition != signal.Fire {
				t.Fatalf("disposition %v (%v), want fire", it.Disposition, it.Err)
			}
			s := it.Signal
			if s.Target != tt.wantTarget || s.Severity != tt.wantSev || !s.FiringTime.Equal(tt.wantFiring) {
				t.Errorf("got target %+v severity %q firing %v, want %+v %q %v",
					s.Target, s.Severity, s.FiringTime, tt.wantTarget, tt.wantSev, tt.wantFiring)
			}
			if tt.wantFiring.IsZero() && !s.FiringTime.IsZero() {
				t.Errorf("firing time %v, want zero", s.FiringTime)
			}
			if _, ok := s.Labels[tt.wantNoLabel]; tt.wantNoLabel != "" && ok {
				t.Errorf("label %q kept", tt.wantNoLabel)
			}
		})
	}
}

func TestDecodeAlertmanagerBoundsLabels(t *testing.T) {
	a := firing()
	a.Annotations = map[string]string{"description": strings.Repeat("d", 5000)}
	for i := range 200 {
		a.Labels[fmt.Sprintf("extra_%03d", i)] = strings.Repeat("v", 1000)
	}
	items, err := signal.DecodeAlertmanager(webhook(t, a), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	s := items[0].Signal
	if items[0].Disposition != signal.Fire {
		t.Fatalf("disposition %v (%v), want fire", items[0].Disposition, items[0].Err)
	}
	if len(s.Labels) != 64 {
		t.Errorf("%d labels, want 64", len(s.Labels))
	}
	for k, v := range s.Labels {
		if len(v) > 256 {
			t.Errorf("label %q has %d bytes, want at most 256", k, len(v))
		}
	}
	if got := len(s.Annotations["description"]); got != 1024 {
		t.Errorf("description of %d bytes, want 1024", got)
	}
	// The bounds limit the copies only: the target came from all labels.
	if s.Target.Name != "web-0" {
		t.Errorf("target %+v", s.Target)
	}
}

func TestDecodeAlertmanagerResolved(t *testing.T) {
	resolved := func(a alert) alert { a.Status = "resolved"; return a }
	items, err := signal.DecodeAlertmanager(webhook(t,
		resolved(firing()),
		resolved(firing("namespace", "")),
		resolved(firing("alertname", "")),
	), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		checkWellFormed(t, it)
		if it.Disposition != signal.Ignore || it.Reason != "alert resolved" {
			t.Errorf("item %d: %v %q, want ignore %q", i, it.Disposition, it.Reason, "alert resolved")
		}
	}
	if items[0].Signal == nil || items[0].Signal.Target.Name != "web-0" {
		t.Errorf("valid resolved alert: Signal %+v, want one for web-0", items[0].Signal)
	}
	for _, i := range []int{1, 2} {
		if items[i].Signal != nil {
			t.Errorf("invalid resolved alert %d: Signal %+v, want nil", i, items[i].Signal)
		}
	}
}

func TestDecodeAlertmanagerPayloadErrors(t *testing.T) {
	valid := `{"status":"firing","labels":{"alertname":"A","namespace":"ns","pod":"p"}}`
	tests := []struct {
		name  string
		body  string
		opts  signal.Options
		field string // "" when the error names no field
	}{
		{"empty body", ``, testOptions, ""},
		{"truncated", `{"version":"4","alerts":[`, testOptions, ""},
		{"not an object", `[]`, testOptions, ""},
		{"trailing data", `{"version":"4","alerts":[` + valid + `]} {}`, testOptions, ""},
		{"bad startsAt", `{"version":"4","alerts":[{"status":"firing","startsAt":"yesterday"}]}`, testOptions, ""},
		{"label of wrong type", `{"version":"4","alerts":[{"status":"firing","labels":{"alertname":1}}]}`, testOptions, "alerts.labels"},
		{"version of wrong type", `{"version":4,"alerts":[` + valid + `]}`, testOptions, "version"},
		{"null", `null`, testOptions, "version"},
		{"no version", `{"alerts":[` + valid + `]}`, testOptions, "version"},
		{"version 3", `{"version":"3","alerts":[` + valid + `]}`, testOptions, "version"},
		{"version 5", `{"version":"5","alerts":[` + valid + `]}`, testOptions, "version"},
		{"no alerts", `{"version":"4"}`, testOptions, "alerts"},
		{"null alerts", `{"version":"4","alerts":null}`, testOptions, "alerts"},
		{"empty alerts", `{"version":"4","alerts":[]}`, testOptions, "alerts"},
		{"no cluster", `{"version":"4","alerts":[` + valid + `]}`, signal.Options{}, "Options.Cluster"},
		{"cluster invalid", `{"version":"4","alerts":[` + valid + `]}`, signal.Options{Cluster: "Prod"}, "Options.Cluster"},
		{"cluster too long", `{"version":"4","alerts":[` + valid + `]}`, signal.Options{Cluster: strings.Repeat("c", 64)}, "Options.Cluster"},
		{"cluster label invalid", `{"version":"4","alerts":[` + valid + `]}`, signal.Options{Cluster: "c", ClusterLabel: "k8s-cluster"}, "Options.ClusterLabel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := signal.DecodeAlertmanager([]byte(tt.body), tt.opts)
			if items != nil {
				t.Errorf("got items %+v with error %v", items, err)
			}
			checkInvalid(t, err, tt.field)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts  signal.Options
		field string
	}{
		{signal.Options{Cluster: "c"}, ""},
		{signal.Options{Cluster: "prod.eu-1"}, ""},
		{signal.Options{Cluster: strings.Repeat("c", 63)}, ""},
		{signal.Options{Cluster: "c", ClusterLabel: "k8s_cluster"}, ""},
		{signal.Options{}, "Options.Cluster"},
		{signal.Options{Cluster: strings.Repeat("c", 64)}, "Options.Cluster"},
		{signal.Options{Cluster: "-c"}, "Options.Cluster"},
		{signal.Options{Cluster: "c", ClusterLabel: "0cluster"}, "Options.ClusterLabel"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if tt.field == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.opts, err)
			}
			continue
		}
		checkInvalid(t, err, tt.field)
	}
}
