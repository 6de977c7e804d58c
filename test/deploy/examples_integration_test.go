//go:build integration

package deploy_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/gateway"
)

// amConfig is the part of an Alertmanager configuration the example sets.
type amConfig struct {
	Route struct {
		Receiver string `json:"receiver"`
	} `json:"route"`
	Receivers []struct {
		Name           string `json:"name"`
		WebhookConfigs []struct {
			URL        string `json:"url"`
			HTTPConfig struct {
				Authorization struct {
					Type            string `json:"type"`
					CredentialsFile string `json:"credentials_file"`
				} `json:"authorization"`
				TLSConfig struct {
					CAFile string `json:"ca_file"`
				} `json:"tls_config"`
			} `json:"http_config"`
		} `json:"webhook_configs"`
	} `json:"receivers"`
}

// TestAlertmanagerExample checks that the example Alertmanager receiver is a
// valid configuration (amtool, from the Debian package that hack/packages.sh
// installs) and that its parts fit together and fit the deployment: the URL
// reaches the gateway Service's port and the gateway's Alertmanager route,
// the token file is where the example volume projects the ServiceAccount
// token, and that ServiceAccount is the one the example binding authorises.
// TestServicesRunAsTheirServiceAccounts sends a token like it to the
// gateway for real.
func TestAlertmanagerExample(t *testing.T) {
	const dir = "deploy/examples"
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatal("amtool not found: run hack/packages.sh (make packages) to install prometheus-alertmanager")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := filepath.Join(repoRoot, dir, "alertmanager-receiver.yaml")
	if out, err := exec.CommandContext(ctx, amtool, "check-config", file).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg amConfig
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Receivers) != 1 || cfg.Receivers[0].Name != cfg.Route.Receiver || len(cfg.Receivers[0].WebhookConfigs) != 1 {
		t.Fatalf("want one receiver, the route's, with one webhook: %+v", cfg)
	}
	wh := cfg.Receivers[0].WebhookConfigs[0]

	u, err := url.Parse(wh.URL)
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	convert(t, find(t, "Service/"+ns+"/leasehold-gateway"), &svc)
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("gateway Service ports %+v, want one", svc.Spec.Ports)
	}
	wantHost := net.JoinHostPort(svc.Name+"."+svc.Namespace+".svc", strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	if u.Scheme != "https" || u.Host != wantHost || u.Path != gateway.PathAlertmanager {
		t.Errorf("webhook URL %s, want https://%s%s (the gateway serves TLS only)", wh.URL, wantHost, gateway.PathAlertmanager)
	}
	gw := deployment(t, "leasehold-gateway").Spec.Template.Spec.Containers[0]
	audience := flagValue(gw.Args, "--token-audience")
	if audience == "" {
		audience = gateway.DefaultAudience
	}

	auth := wh.HTTPConfig.Authorization
	if auth.Type != "Bearer" || auth.CredentialsFile == "" {
		t.Fatalf("authorization %+v, want Bearer with credentials_file", auth)
	}
	var sts appsv1.StatefulSet
	convert(t, readObjects(t, path.Join(dir, "alertmanager-token-volume.yaml"))[0], &sts)
	pod := sts.Spec.Template.Spec
	var tokenFile, caFile string
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if tok := src.ServiceAccountToken; tok != nil {
					if tok.Audience != audience {
						t.Errorf("projected token audience %q, want the gateway's --token-audience %q: a token for the API server could be replayed against it", tok.Audience, audience)
					}
					tokenFile = path.Join(m.MountPath, tok.Path)
				}
				if cm := src.ConfigMap; cm != nil {
					for _, item := range cm.Items {
						caFile = path.Join(m.MountPath, item.Path)
					}
				}
			}
		}
	}
	if tokenFile != auth.CredentialsFile {
		t.Errorf("credentials_file %s, but the example volume projects the token to %q", auth.CredentialsFile, tokenFile)
	}
	if ca := wh.HTTPConfig.TLSConfig.CAFile; ca == "" || ca != caFile {
		t.Errorf("tls_config.ca_file %q, but the example volume projects the CA to %q", ca, caFile)
	}

	var rb rbacv1.RoleBinding
	convert(t, readObjects(t, path.Join(dir, "alertmanager-rbac.yaml"))[0], &rb)
	if rb.Namespace != ns || rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "leasehold-signal-sender" {
		t.Errorf("example binding %s/%s binds %+v, want Role leasehold-signal-sender in %s", rb.Namespace, rb.Name, rb.RoleRef, ns)
	}
	find(t, "Role/"+ns+"/"+rb.RoleRef.Name)
	if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != rbacv1.ServiceAccountKind ||
		rb.Subjects[0].Namespace != sts.Namespace || rb.Subjects[0].Name != pod.ServiceAccountName {
		t.Errorf("example binding subjects %+v, want the ServiceAccount %s/%s whose token the example volume projects",
			rb.Subjects, sts.Namespace, pod.ServiceAccountName)
	}
}
