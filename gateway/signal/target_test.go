package signal

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/leasehold/leasehold/api/v1alpha1"
)

// TestTargetFromLabels is the package documentation's target table, row by
// row, plus the precedence between rows and every way extraction fails.
func TestTargetFromLabels(t *testing.T) {
	ref := func(apiVersion, kind, ns, name string) v1alpha1.TargetRef {
		return v1alpha1.TargetRef{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name}
	}
	tests := []struct {
		name      string
		labels    map[string]string
		want      v1alpha1.TargetRef
		wantField string // non-empty: extraction fails on this field
	}{
		// One row of the table each.
		{"pod", map[string]string{"namespace": "ns", "pod": "web-0"}, ref("v1", "Pod", "ns", "web-0"), ""},
		{"deployment", map[string]string{"namespace": "ns", "deployment": "web"}, ref("apps/v1", "Deployment", "ns", "web"), ""},
		{"statefulset", map[string]string{"namespace": "ns", "statefulset": "db"}, ref("apps/v1", "StatefulSet", "ns", "db"), ""},
		{"daemonset", map[string]string{"namespace": "ns", "daemonset": "agent"}, ref("apps/v1", "DaemonSet", "ns", "agent"), ""},
		{"replicaset", map[string]string{"namespace": "ns", "replicaset": "web-5b7c9"}, ref("apps/v1", "ReplicaSet", "ns", "web-5b7c9"), ""},
		{"job_name", map[string]string{"namespace": "ns", "job_name": "backup-1"}, ref("batch/v1", "Job", "ns", "backup-1"), ""},
		{"cronjob", map[string]string{"namespace": "ns", "cronjob": "backup"}, ref("batch/v1", "CronJob", "ns", "backup"), ""},
		{"node", map[string]string{"node": "worker-1"}, ref("v1", "Node", "", "worker-1"), ""},
		{"persistentvolumeclaim", map[string]string{"namespace": "ns", "persistentvolumeclaim": "data-db-0"}, ref("v1", "PersistentVolumeClaim", "ns", "data-db-0"), ""},
		{"service", map[string]string{"namespace": "ns", "service": "web"}, ref("v1", "Service", "ns", "web"), ""},

		// Precedence: the most specific label present wins.
		{"pod over deployment and service", map[string]string{"namespace": "ns", "pod": "web-0", "deployment": "web", "service": "web"}, ref("v1", "Pod", "ns", "web-0"), ""},
		{"deployment over node", map[string]string{"namespace": "ns", "deployment": "web", "node": "worker-1"}, ref("apps/v1", "Deployment", "ns", "web"), ""},
		{"job_name over node", map[string]string{"namespace": "ns", "job_name": "backup-1", "node": "worker-1"}, ref("batch/v1", "Job", "ns", "backup-1"), ""},
		{"node over pvc and service", map[string]string{"namespace": "ns", "node": "worker-1", "persistentvolumeclaim": "data", "service": "web"}, ref("v1", "Node", "", "worker-1"), ""},
		{"pvc over service", map[string]string{"namespace": "ns", "persistentvolumeclaim": "data", "service": "web"}, ref("v1", "PersistentVolumeClaim", "ns", "data"), ""},
		{"empty value is absent", map[string]string{"namespace": "ns", "pod": "", "deployment": "web"}, ref("apps/v1", "Deployment", "ns", "web"), ""},

		// Node is cluster-scoped whatever the alert says.
		{"node ignores namespace", map[string]string{"namespace": "monitoring", "node": "worker-1"}, ref("v1", "Node", "", "worker-1"), ""},
		{"node ignores invalid namespace", map[string]string{"namespace": "Not_Valid", "node": "worker-1"}, ref("v1", "Node", "", "worker-1"), ""},

		// Labels deliberately not read.
		{"job is the scrape job", map[string]string{"namespace": "ns", "job": "kube-state-metrics"}, v1alpha1.TargetRef{}, "labels"},
		{"job does not outrank node", map[string]string{"job": "node-exporter", "node": "worker-1"}, ref("v1", "Node", "", "worker-1"), ""},
		{"exported_namespace is not a namespace", map[string]string{"exported_namespace": "ns", "pod": "web-0"}, v1alpha1.TargetRef{}, "labels.namespace"},

		// Failures.
		{"no labels", nil, v1alpha1.TargetRef{}, "labels"},
		{"no target label", map[string]string{"namespace": "ns", "instance": "10.0.0.1:9100", "container": "web"}, v1alpha1.TargetRef{}, "labels"},
		{"namespaced kind without namespace", map[string]string{"deployment": "web"}, v1alpha1.TargetRef{}, "labels.namespace"},
		{"namespace not a label", map[string]string{"namespace": "a.b", "pod": "web-0"}, v1alpha1.TargetRef{}, "labels.namespace"},
		{"namespace upper case", map[string]string{"namespace": "Prod", "pod": "web-0"}, v1alpha1.TargetRef{}, "labels.namespace"},
		{"namespace too long", map[string]string{"namespace": strings.Repeat("n", 64), "pod": "web-0"}, v1alpha1.TargetRef{}, "labels.namespace"},
		{"pod name invalid", map[string]string{"namespace": "ns", "pod": "Web_0"}, v1alpha1.TargetRef{}, "labels.pod"},
		{"job name invalid", map[string]string{"namespace": "ns", "job_name": "-backup"}, v1alpha1.TargetRef{}, "labels.job_name"},
		{"node name too long", map[string]string{"node": strings.Repeat("a", 254)}, v1alpha1.TargetRef{}, "labels.node"},
		{"invalid specific label is not skipped", map[string]string{"namespace": "ns", "pod": "Web_0", "deployment": "web"}, v1alpha1.TargetRef{}, "labels.pod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fe := targetFromLabels(tt.labels)
			if tt.wantField != "" {
				if fe == nil {
					t.Fatalf("got target %+v, want error on %q", got, tt.wantField)
				}
				if fe.Field != tt.wantField {
					t.Fatalf("error field = %q (%v), want %q", fe.Field, fe, tt.wantField)
				}
				return
			}
			if fe != nil {
				t.Fatalf("unexpected error: %v", fe)
			}
			if got != tt.want {
				t.Fatalf("target = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"", 0, ""},
		{"héllo", 2, "h"}, // é is two bytes: not split
		{"héllo", 3, "hé"},
		{"日本", 4, "日"},
		{"日本", 2, ""},
	}
	for _, tt := range tests {
		got := truncate(tt.in, tt.n)
		if got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q: not valid UTF-8", tt.in, tt.n, got)
		}
	}
}

func TestBoundedCopy(t *testing.T) {
	if got := boundedCopy(nil, 10); got != nil {
		t.Errorf("boundedCopy(nil) = %v, want nil", got)
	}

	m := make(map[string]string)
	for i := range 100 {
		m[string(rune('a'+i/26))+string(rune('a'+i%26))] = strings.Repeat("v", 300)
	}
	m[strings.Repeat("k", maxKeyLength+1)] = "dropped: key too long"
	m["a"+strings.Repeat("k", maxKeyLength-1)] = "kept: key at the limit"

	got := boundedCopy(m, maxLabelValueLength)
	if len(got) != maxEntries {
		t.Fatalf("len = %d, want %d", len(got), maxEntries)
	}
	if _, ok := got["a"+strings.Repeat("k", maxKeyLength-1)]; !ok {
		t.Errorf("key of exactly %d bytes dropped", maxKeyLength)
	}
	// The 64 smallest keys are kept: "aa".."az", "akk...k", "ba".."bz",
	// "ca".."ck".
	for _, k := range []string{"aa", "az", "bz", "ck"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q dropped, want kept", k)
		}
	}
	for _, k := range []string{"cl", "dv"} {
		if _, ok := got[k]; ok {
			t.Errorf("key %q kept, want dropped", k)
		}
	}
	if v := got["aa"]; len(v) != maxLabelValueLength {
		t.Errorf("value length = %d, want %d", len(v), maxLabelValueLength)
	}
}
