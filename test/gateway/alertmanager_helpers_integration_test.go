//go:build integration

package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/gateway"
	"github.com/leasehold/leasehold/internal/proc"
)

// amBinary is Alertmanager 0.25 from the Debian package; hack/packages.sh
// installs it.
const amBinary = "/usr/bin/prometheus-alertmanager"

// amWebhookPath is the gateway route Alertmanager's webhooks are sent to.
const amWebhookPath = "/api/v1/signals/alertmanager"

// amProcess is one running Alertmanager.
type amProcess struct {
	*proc.Process
	URL string
}

// startAlertmanager starts Alertmanager with one receiver that sends every
// notification, resolved ones included, to each of webhooks with token as
// bearer credentials, and waits until it is ready. It is stopped (SIGTERM,
// then checked for a clean exit and a log without panics) when the test
// ends.
//
// Grouping is by alertname, namespace and pod, so each alert of the test is
// a group of its own and each group is one notification per webhook. The
// short group_wait and group_interval make the first notification and the
// resolved one come quickly; the long repeat_interval keeps a group that
// did not change from being sent again while the test runs.
func startAlertmanager(t *testing.T, webhooks []string, token string) *amProcess {
	t.Helper()
	if _, err := os.Stat(amBinary); err != nil {
		t.Fatalf("Alertmanager is not installed (%v): run hack/packages.sh (make test does) to install prometheus-alertmanager", err)
	}
	var configs []map[string]any
	for _, url := range webhooks {
		configs = append(configs, map[string]any{
			"url":           url,
			"send_resolved": true,
			"http_config": map[string]any{
				"authorization": map[string]any{"type": "Bearer", "credentials": token},
			},
		})
	}
	config, err := yaml.Marshal(map[string]any{
		"route": map[string]any{
			"receiver":        "leasehold",
			"group_by":        []string{"alertname", "namespace", "pod"},
			"group_wait":      "100ms",
			"group_interval":  "1s",
			"repeat_interval": "1h",
		},
		"receivers": []map[string]any{{"name": "leasehold", "webhook_configs": configs}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	configPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(configPath, config, 0o600); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "data")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(proc.Spec{
		Name: "alertmanager",
		Path: amBinary,
		Args: []string{
			"--config.file=" + configPath,
			"--storage.path=" + storage,
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
			// Empty: no cluster gossip. A single instance would otherwise
			// look for peers and wait for them before it sends anything.
			"--cluster.listen-address=",
		},
		LogDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	am := &amProcess{Process: p, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		if err := p.Stop(20 * time.Second); err != nil {
			t.Errorf("alertmanager: %v\n%s", err, p.Tail(4000))
		}
		amCheckLogs(t, p)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, am.URL+"/-/ready"); err != nil {
		t.Fatal(err)
	}
	return am
}

// amAlert is a postable alert of Alertmanager's API v2.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

// post sends alerts to Alertmanager's API, as Prometheus does.
func (am *amProcess) post(t *testing.T, alerts []amAlert) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := amHTTP.Post(am.URL+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post alerts to alertmanager: %v\n%s", err, am.Tail(4000))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post alerts to alertmanager: %s: %s\n%s", resp.Status, answer, am.Tail(4000))
	}
}

// amHTTP bounds every request the test makes itself.
var amHTTP = &http.Client{Timeout: 10 * time.Second}

// amSignalOutcomes sums gateway_signals_total over the gateways, by
// outcome.
func amSignalOutcomes(gws []*gatewayProcess) (map[string]float64, error) {
	sums := map[string]float64{}
	for _, gw := range gws {
		resp, err := amHTTP.Get(gw.URL + "/metrics")
		if err != nil {
			return nil, fmt.Errorf("%s: scrape: %w", gw.Name, err)
		}
		families, err := func() (map[string]*dto.MetricFamily, error) {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("scrape: %s", resp.Status)
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			return parser.TextToMetricFamilies(resp.Body)
		}()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", gw.Name, err)
		}
		mf, ok := families[gateway.MetricSignals]
		if !ok {
			return nil, fmt.Errorf("%s: no %s in /metrics", gw.Name, gateway.MetricSignals)
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" {
					sums[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sums, nil
}

// amWaitFor polls cond every 100ms until it returns true, fails the test
// when it returns an error, and fails it with cond's last description of
// the state (and diag, for the processes' logs) once timeout has passed.
func amWaitFor(t *testing.T, timeout time.Duration, what string, diag func() string, cond func() (bool, string, error)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, state, err := cond()
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, diag())
		}
		if done {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not reached within %v; last state: %s\n%s", what, timeout, state, diag())
		case <-tick.C:
		}
	}
}

// amCheckLogs fails the test if a process's output reports a panic or a
// data race (the children are built with -race when the test runs with it).
func amCheckLogs(t *testing.T, procs ...*proc.Process) {
	t.Helper()
	for _, p := range procs {
		b, err := os.ReadFile(p.LogPath())
		if err != nil {
			t.Errorf("%s: read log: %v", p.Name, err)
			continue
		}
		for _, bad := range []string{"panic", "DATA RACE"} {
			if i := bytes.Index(b, []byte(bad)); i >= 0 {
				lo, hi := max(0, i-2000), min(len(b), i+4000)
				t.Errorf("%s: log says %q:\n%s", p.Name, bad, b[lo:hi])
			}
		}
	}
}

// amTails is the end of each process's output, for failure messages.
func amTails(procs ...*proc.Process) string {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "--- %s (%s):\n%s\n", p.Name, p.LogPath(), p.Tail(3000))
	}
	return b.String()
}
