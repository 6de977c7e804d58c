package stack

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/alertmanager/template"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/internal/storm"
)

// PrintAccess tells a person where everything is and how to use it: the
// gateway URLs, the kubeconfig, the processes and their logs, a curl that
// sends one alert, and the Alertmanager receiver for these gateways.
func (s *Stack) PrintAccess(w io.Writer) error {
	var b strings.Builder
	urls := s.GatewayURLs()
	fmt.Fprintf(&b, "\nleasehold is up in namespace %s\n", s.Namespace)
	fmt.Fprintf(&b, "  kubeconfig:  %s\n", s.KubeconfigPath)
	fmt.Fprintf(&b, "  API server:  %s\n", s.ControlPlane.APIServerURL())
	fmt.Fprintf(&b, "  data dir:    %s\n", s.dataDir)
	fmt.Fprintf(&b, "  logs:        %s/<name>.log\n", s.LogDir)
	b.WriteString("\ngateways (no authentication: --insecure-no-auth, for this local stack only):\n")
	for _, u := range urls {
		fmt.Fprintf(&b, "  %s\n", u)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tPID\tREADY\tMETRICS\tLOG")
	for _, svc := range s.Services() {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\n", svc.Name, svc.PID, svc.ReadyURL, svc.MetricsURL, svc.LogPath)
	}
	tw.Flush()
	if len(urls) > 0 {
		curl, err := curlCommand(urls[0], time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nsend an alert (Alertmanager webhook, version 4, about a Pod):\n  %s\n", curl)
		am, err := alertmanagerConfig(urls)
		if err != nil {
			return err
		}
		b.WriteString("\npoint an Alertmanager at the gateways (alertmanager.yml); every notification\n" +
			"goes to each URL, and the gateways count it on one RemediationRequest:\n")
		for line := range strings.Lines(am) {
			b.WriteString("  " + line)
		}
	}
	fmt.Fprintf(&b, "\ninspect:\n  KUBECONFIG=%s kubectl get remediationrequests,workflowexecutions,leases -n %s\n", s.KubeconfigPath, s.Namespace)
	_, err := io.WriteString(w, b.String())
	return err
}

// webhookMessage is the body Alertmanager's webhook notifier sends
// (version 4): template.Data plus three fields. It is written out here
// because the notifier's own package pulls in dependencies this module
// does not carry.
type webhookMessage struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// exampleAlert is a firing alert about a Pod, as kube-prometheus's
// KubePodCrashLooping rule reports one. The Pod does not exist, so the
// gateway's owner resolution leaves the Pod as the target.
func exampleAlert(now time.Time) ([]byte, error) {
	labels := template.KV{
		"alertname": "KubePodCrashLooping",
		"namespace": "default",
		"pod":       "web-0",
		"container": "web",
		"severity":  "warning",
	}
	annotations := template.KV{
		"summary":     "Pod is crash looping.",
		"description": "Pod default/web-0 (web) is in waiting state (reason: CrashLoopBackOff).",
	}
	msg := webhookMessage{
		Data: &template.Data{
			Receiver:          "leasehold",
			Status:            "firing",
			GroupLabels:       template.KV{"alertname": "KubePodCrashLooping", "namespace": "default", "pod": "web-0"},
			CommonLabels:      labels,
			CommonAnnotations: annotations,
			ExternalURL:       "http://alertmanager.example:9093",
			Alerts: template.Alerts{{
				Status:       "firing",
				Labels:       labels,
				Annotations:  annotations,
				StartsAt:     now.UTC().Truncate(time.Second),
				GeneratorURL: "http://prometheus.example:9090/graph",
				Fingerprint:  "5f8a3c2b1d4e6f70",
			}},
		},
		Version:  "4",
		GroupKey: `{}:{alertname="KubePodCrashLooping", namespace="default", pod="web-0"}`,
	}
	return json.Marshal(msg)
}

// curlCommand is a shell command that posts exampleAlert to the gateway at
// base. The body contains no single quote, so single quotes protect it.
func curlCommand(base string, now time.Time) (string, error) {
	body, err := exampleAlert(now)
	if err != nil {
		return "", err
	}
	if strings.Contains(string(body), "'") {
		return "", fmt.Errorf("example alert contains a single quote: %s", body)
	}
	return fmt.Sprintf("curl -sS -H 'Content-Type: application/json' --data-binary '%s' %s%s", body, base, storm.AlertmanagerPath), nil
}

// alertmanagerConfig is a minimal alertmanager.yml whose receiver sends to
// every gateway. Resolved alerts are not sent: the gateway ignores them.
func alertmanagerConfig(gatewayURLs []string) (string, error) {
	hooks := make([]map[string]any, 0, len(gatewayURLs))
	for _, u := range gatewayURLs {
		hooks = append(hooks, map[string]any{"url": u + storm.AlertmanagerPath, "send_resolved": false})
	}
	out, err := yaml.Marshal(map[string]any{
		"route":     map[string]any{"receiver": "leasehold"},
		"receivers": []map[string]any{{"name": "leasehold", "webhook_configs": hooks}},
	})
	return string(out), err
}
