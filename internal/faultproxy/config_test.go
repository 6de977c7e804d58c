package faultproxy_test

import (
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leasehold/leasehold/internal/faultproxy"
)

func TestRestConfig(t *testing.T) {
	p := newProxy(t, "127.0.0.1:6443")
	for _, tc := range []struct {
		name           string
		host           string
		serverName     string
		wantHost       string
		wantServerName string
	}{
		{"ip", "https://127.0.0.1:6443", "", "https://" + p.Addr(), "127.0.0.1"},
		{"name", "https://localhost:6443", "", "https://" + p.Addr(), "localhost"},
		{"no scheme is https", "localhost:6443", "", "https://" + p.Addr(), "localhost"},
		{"server name kept", "https://127.0.0.1:6443", "kubernetes.default", "https://" + p.Addr(), "kubernetes.default"},
		{"path kept", "https://127.0.0.1:6443/prefix", "", "https://" + p.Addr() + "/prefix", "127.0.0.1"},
		{"plain http has no server name", "http://127.0.0.1:8080", "", "http://" + p.Addr(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &rest.Config{Host: tc.host, BearerToken: "t"}
			base.TLSClientConfig.ServerName = tc.serverName
			base.TLSClientConfig.CAData = []byte("ca")
			got, err := faultproxy.RestConfig(base, p)
			if err != nil {
				t.Fatal(err)
			}
			if got.Host != tc.wantHost || got.TLSClientConfig.ServerName != tc.wantServerName {
				t.Fatalf("Host %q ServerName %q, want %q %q", got.Host, got.TLSClientConfig.ServerName, tc.wantHost, tc.wantServerName)
			}
			if got.BearerToken != "t" || string(got.TLSClientConfig.CAData) != "ca" {
				t.Fatal("credentials or CA not copied")
			}
			if base.Host != tc.host || base.TLSClientConfig.ServerName != tc.serverName {
				t.Fatal("base was modified")
			}
		})
	}
}

func TestRestConfigRejects(t *testing.T) {
	p := newProxy(t, "127.0.0.1:6443")
	if _, err := faultproxy.RestConfig(nil, p); err == nil {
		t.Error("nil config: nil error")
	}
	if _, err := faultproxy.RestConfig(&rest.Config{Host: "https://127.0.0.1:6443"}, nil); err == nil {
		t.Error("nil proxy: nil error")
	}
	for _, host := range []string{"", "https://", "https://[::1"} {
		if _, err := faultproxy.RestConfig(&rest.Config{Host: host}, p); err == nil {
			t.Errorf("Host %q: nil error", host)
		}
	}
}

func TestKubeconfig(t *testing.T) {
	p := newProxy(t, "127.0.0.1:6443")
	in := clientcmdapi.NewConfig()
	in.Clusters["envtest"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("ca")}
	in.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://10.0.0.1:6443"}
	in.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "t"}
	in.Contexts["default"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	in.Contexts["elsewhere"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "admin"}
	in.CurrentContext = "default"
	data, err := clientcmd.Write(*in)
	if err != nil {
		t.Fatal(err)
	}

	outData, err := faultproxy.Kubeconfig(data, p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := clientcmd.Load(outData)
	if err != nil {
		t.Fatalf("result does not load: %v", err)
	}
	c := out.Clusters["envtest"]
	if c.Server != "https://"+p.Addr() || c.TLSServerName != "127.0.0.1" || string(c.CertificateAuthorityData) != "ca" {
		t.Fatalf("current cluster: server %q, tls-server-name %q, CA %q", c.Server, c.TLSServerName, c.CertificateAuthorityData)
	}
	if o := out.Clusters["other"]; o.Server != "https://10.0.0.1:6443" || o.TLSServerName != "" {
		t.Fatalf("other cluster changed: %+v", o)
	}
	if out.AuthInfos["admin"].Token != "t" || out.CurrentContext != "default" {
		t.Fatal("credentials or current context lost")
	}

	// The rewritten file builds a client config that goes to the proxy and
	// checks the original name.
	rc, err := clientcmd.RESTConfigFromKubeConfig(outData)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://"+p.Addr() || rc.TLSClientConfig.ServerName != "127.0.0.1" {
		t.Fatalf("rest config: Host %q ServerName %q", rc.Host, rc.TLSClientConfig.ServerName)
	}
}

func TestKubeconfigRejects(t *testing.T) {
	p := newProxy(t, "127.0.0.1:6443")
	noContext := clientcmdapi.NewConfig()
	noContext.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	noCluster := clientcmdapi.NewConfig()
	noCluster.Contexts["x"] = &clientcmdapi.Context{Cluster: "missing"}
	noCluster.CurrentContext = "x"
	for name, cfg := range map[string]*clientcmdapi.Config{"no current context": noContext, "missing cluster": noCluster} {
		data, err := clientcmd.Write(*cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := faultproxy.Kubeconfig(data, p); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
	if _, err := faultproxy.Kubeconfig([]byte("{not yaml"), p); err == nil {
		t.Error("garbage: nil error")
	}
	if _, err := faultproxy.Kubeconfig(nil, nil); err == nil {
		t.Error("nil proxy: nil error")
	}
}
