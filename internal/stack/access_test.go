package stack

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/signal"
)

// The example alert is what the gateway's own decoder accepts as one
// firing alert about the Pod default/web-0.
func TestExampleAlertDecodes(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body, err := exampleAlert(now)
	if err != nil {
		t.Fatal(err)
	}
	items, err := signal.DecodeAlertmanager(body, signal.Options{Cluster: "local"})
	if err != nil {
		t.Fatalf("DecodeAlertmanager: %v\n%s", err, body)
	}
	if len(items) != 1 || items[0].Disposition != signal.Fire {
		t.Fatalf("items = %+v, want one Fire", items)
	}
	sig := items[0].Signal
	want := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "default", Name: "web-0"}
	if sig.Target != want || sig.Name != "KubePodCrashLooping" || sig.Severity != "warning" || !sig.FiringTime.Equal(now) {
		t.Errorf("signal = %+v, want a warning KubePodCrashLooping about %v firing since %v", sig, want, now)
	}
	// The fields Alertmanager's webhook notifier adds to template.Data.
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"} {
		if _, ok := msg[field]; !ok {
			t.Errorf("body lacks %q: %s", field, body)
		}
	}
	if msg["version"] != "4" {
		t.Errorf("version = %v, want \"4\"", msg["version"])
	}
}

// The curl command runs as printed: the body sits between single quotes
// and is the example alert, and the URL is the gateway's webhook path.
func TestCurlCommand(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cmd, err := curlCommand("http://127.0.0.1:4242", now)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "curl -sS -H 'Content-Type: application/json' --data-binary '"
	const suffix = "' http://127.0.0.1:4242/api/v1/signals/alertmanager"
	if !strings.HasPrefix(cmd, prefix) || !strings.HasSuffix(cmd, suffix) {
		t.Fatalf("curl command = %s", cmd)
	}
	body := strings.TrimSuffix(strings.TrimPrefix(cmd, prefix), suffix)
	want, err := exampleAlert(now)
	if err != nil {
		t.Fatal(err)
	}
	if body != string(want) {
		t.Errorf("quoted body = %s, want %s", body, want)
	}
	if strings.ContainsAny(body, "'\n") {
		t.Errorf("body holds a single quote or a newline, which breaks the quoting: %s", body)
	}
}

func TestAlertmanagerConfig(t *testing.T) {
	urls := []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}
	out, err := alertmanagerConfig(urls)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Route struct {
			Receiver string `json:"receiver"`
		} `json:"route"`
		Receivers []struct {
			Name           string `json:"name"`
			WebhookConfigs []struct {
				URL          string `json:"url"`
				SendResolved bool   `json:"send_resolved"`
			} `json:"webhook_configs"`
		} `json:"receivers"`
	}
	if err := yaml.UnmarshalStrict([]byte(out), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if cfg.Route.Receiver != "leasehold" || len(cfg.Receivers) != 1 || cfg.Receivers[0].Name != "leasehold" || len(cfg.Receivers[0].WebhookConfigs) != 3 {
		t.Fatalf("config = %+v", cfg)
	}
	for i, h := range cfg.Receivers[0].WebhookConfigs {
		if h.URL != urls[i]+"/api/v1/signals/alertmanager" || h.SendResolved {
			t.Errorf("webhook %d = %+v", i, h)
		}
	}

	// Alertmanager's own checker (Debian package prometheus-alertmanager,
	// which `make packages` installs).
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatal("amtool not found: run hack/packages.sh (Debian package prometheus-alertmanager)")
	}
	path := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.CommandContext(t.Context(), amtool, "check-config", path).CombinedOutput(); err != nil {
		t.Errorf("amtool check-config: %v\n%s\n%s", err, res, out)
	}
}
