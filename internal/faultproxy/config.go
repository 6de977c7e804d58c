package faultproxy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RestConfig returns a copy of base that reaches base's server through p.
// Only the server's host:port changes: the scheme and path stay, and the TLS
// server name stays the original host (unless base already names one), so
// the client still verifies the server's own certificate. base is not
// modified. p should forward to base's server; RestConfig cannot check that,
// since one server has several names.
func RestConfig(base *rest.Config, p *Proxy) (*rest.Config, error) {
	if base == nil || p == nil {
		return nil, errors.New("faultproxy: nil rest config or proxy")
	}
	server, host, tls, err := throughProxy(base.Host, p)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(base)
	cfg.Host = server
	if tls && cfg.TLSClientConfig.ServerName == "" {
		cfg.TLSClientConfig.ServerName = host
	}
	return cfg, nil
}

// Kubeconfig rewrites a kubeconfig file's content so that its current
// context's cluster is reached through p, the same way RestConfig does
// (tls-server-name keeps the original host unless already set). Other
// clusters are left alone. It is for processes a test starts.
func Kubeconfig(kubeconfig []byte, p *Proxy) ([]byte, error) {
	if p == nil {
		return nil, errors.New("faultproxy: nil proxy")
	}
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: load kubeconfig: %w", err)
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("faultproxy: kubeconfig has no current context (current-context %q)", cfg.CurrentContext)
	}
	cluster, ok := cfg.Clusters[kctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("faultproxy: kubeconfig context %q names cluster %q, which it does not define", cfg.CurrentContext, kctx.Cluster)
	}
	server, host, tls, err := throughProxy(cluster.Server, p)
	if err != nil {
		return nil, err
	}
	cluster.Server = server
	if tls && cluster.TLSServerName == "" {
		cluster.TLSServerName = host
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: write kubeconfig: %w", err)
	}
	return out, nil
}

// throughProxy returns server with its host:port replaced by p's address,
// the original hostname (what the server's certificate must cover), and
// whether the server speaks TLS. A server without a scheme is HTTPS, as
// client-go reads it.
func throughProxy(server string, p *Proxy) (proxied, host string, tls bool, err error) {
	raw := server
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", false, fmt.Errorf("faultproxy: server %q: %w", server, err)
	}
	if u.Hostname() == "" {
		return "", "", false, fmt.Errorf("faultproxy: server %q has no host", server)
	}
	host = u.Hostname()
	u.Host = p.Addr()
	return u.String(), host, u.Scheme == "https", nil
}
