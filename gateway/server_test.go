package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/gateway/dedup"
	"github.com/leasehold/leasehold/gateway/owner"
)

func TestNewValidates(t *testing.T) {
	good := func() Config {
		return Config{Dedup: newFakeDedup(), Cluster: "c", TokenReviewer: newFakeTokens()}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no dedup", func(c *Config) { c.Dedup = nil }, "Dedup is required"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "Options.Cluster"},
		{"bad cluster", func(c *Config) { c.Cluster = "Not_DNS" }, "Options.Cluster"},
		{"bad cluster label", func(c *Config) { c.ClusterLabel = "a-b" }, "Options.ClusterLabel"},
		{"no token reviewer", func(c *Config) { c.TokenReviewer = nil }, "TokenReviewer is required"},
		{"access review without reviewer", func(c *Config) { c.AccessReview = true; c.Namespace = "ns" }, "AccessReviewer is required"},
		{"access review without namespace", func(c *Config) { c.AccessReview = true; c.AccessReviewer = &fakeAccess{} }, "Namespace is required"},
		{"access review with auth off", func(c *Config) { c.InsecureNoAuth = true; c.AccessReview = true }, "cannot be on"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "MaxBodyBytes"},
		{"negative in flight", func(c *Config) { c.MaxInFlight = -1 }, "MaxInFlight"},
		{"batch over cap", func(c *Config) { c.MaxInFlight = 4; c.BatchConcurrency = 5 }, "BatchConcurrency"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"negative cache", func(c *Config) { c.AuthCacheTTL = -time.Second }, "AuthCacheTTL"},
		{"cert without key", func(c *Config) { c.TLSCertFile = "x.crt" }, "go together"},
		{"unreadable cert", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = "/nonexistent.crt", "/nonexistent.key" }, "load TLS key pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mutate(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Several problems are reported at once.
	_, err := New(Config{})
	for _, want := range []string{"Dedup", "Cluster", "TokenReviewer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(Config{}): %v, want it to mention %s", err, want)
		}
	}

	s, err := New(good())
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.MaxBodyBytes != 1<<20 || c.MaxInFlight != 1000 || c.BatchConcurrency != 32 || c.RequestTimeout != 10*time.Second ||
		c.ShutdownTimeout != 15*time.Second || c.AuthCacheTTL != 10*time.Second || c.AuthCacheNegativeTTL != 2*time.Second ||
		c.Addr != ":8080" || c.RetryAfter != time.Second || c.Resolver != (owner.Identity{}) {
		t.Errorf("defaults = %+v", c)
	}
	small, err := New(Config{Dedup: newFakeDedup(), Cluster: "c", InsecureNoAuth: true, MaxInFlight: 5})
	if err != nil {
		t.Fatal(err)
	}
	if small.cfg.BatchConcurrency != 5 {
		t.Errorf("BatchConcurrency default with MaxInFlight 5 = %d, want 5", small.cfg.BatchConcurrency)
	}
}

// startServe runs srv.Serve on a loopback listener and returns its base
// URL and the channel Serve's result arrives on.
func startServe(t *testing.T, ctx context.Context, srv *Server) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return ln.Addr().String(), done
}

// Graceful shutdown: once the context ends, /readyz fails and new
// connections are refused, the request in flight still finishes, and
// Serve returns nil after it.
func TestServeGracefulShutdown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InsecureNoAuth = true; c.TokenReviewer = nil })
	entered := make(chan struct{})
	release := make(chan struct{})
	e.dedup.hook = func(context.Context, dedup.Incident) error {
		close(entered)
		<-release
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startServe(t, ctx, e.srv)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()

	waitFor(t, "the server to accept", func() bool {
		resp, err := client.Get("http://" + addr + PathReadyz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	type answer struct {
		code int
		err  error
	}
	inflight := make(chan answer, 1)
	go func() {
		resp, err := client.Post("http://"+addr+PathAlertmanager, "application/json", bytes.NewReader(webhook(t, firing("X", "shop", "pod", "a"))))
		if err != nil {
			inflight <- answer{err: err}
			return
		}
		resp.Body.Close()
		inflight <- answer{code: resp.StatusCode}
	}()
	<-entered
	cancel()

	rec := e.do(t, http.MethodGet, PathReadyz, nil, nil)
	waitFor(t, "readyz to fail", func() bool {
		rec = e.do(t, http.MethodGet, PathReadyz, nil, nil)
		return rec.Code == http.StatusServiceUnavailable
	})
	decodeProblem(t, rec, http.StatusServiceUnavailable, ProblemShuttingDown)
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}

	close(release)
	if a := <-inflight; a.err != nil || a.code != http.StatusCreated {
		t.Errorf("in-flight request: %d, %v; want 201", a.code, a.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v, want nil after a graceful shutdown", err)
	}
	if n := len(e.dedup.recorded()); n != 1 {
		t.Errorf("recorded %d, want 1", n)
	}
}

// A request that does not finish within ShutdownTimeout has its context
// cancelled; Serve reports the timeout and returns only after the handler
// has.
func TestServeShutdownTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.InsecureNoAuth = true
		c.TokenReviewer = nil
		c.ShutdownTimeout = 50 * time.Millisecond
	})
	entered := make(chan struct{})
	handlerDone := make(chan struct{})
	e.dedup.hook = func(ctx context.Context, _ dedup.Incident) error {
		close(entered)
		<-ctx.Done() // only cancellation ends it
		close(handlerDone)
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startServe(t, ctx, e.srv)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	clientDone := make(chan error, 1)
	go func() {
		var resp *http.Response
		var err error
		for {
			resp, err = client.Post("http://"+addr+PathAlertmanager, "application/json", bytes.NewReader(webhook(t, firing("X", "shop", "pod", "a"))))
			var opErr *net.OpError
			if !errors.As(err, &opErr) || opErr.Op != "dial" {
				break
			}
		}
		if err == nil {
			resp.Body.Close()
		}
		clientDone <- err
	}()
	<-entered
	cancel()
	err := <-done
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve: %v, want a shutdown timeout", err)
	}
	select {
	case <-handlerDone:
	default:
		t.Error("Serve returned before the handler")
	}
	<-clientDone
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeSelfSigned(t, dir)
	e := newEnv(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := startServe(t, ctx, e.srv)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	client := &http.Client{Transport: tr}
	waitFor(t, "an HTTPS answer", func() bool {
		resp, err := client.Get("https://" + addr + PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && resp.TLS != nil
	})
	tr.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServeTwice(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := startServe(t, ctx, e.srv)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "the first Serve to answer", func() bool {
		resp, err := client.Get("http://" + addr + PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Serve(ctx, ln); err == nil {
		t.Error("second Serve succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key, and
// returns a pool that trusts it.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gateway"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// Config.ClockOffset applies to the server's clock: ReceivedAt. The clock
// itself is tested in package skewclock.
func TestConfigClockOffset(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ClockOffset = 90 * time.Second })
	e.post(t, PathAlertmanager, webhook(t, firing("X", "shop", "pod", "a")))
	if ins := e.dedup.recorded(); len(ins) != 1 || !ins[0].ReceivedAt.Equal(t0.Add(90*time.Second)) {
		t.Errorf("ReceivedAt with a 90s offset = %v, want %v", ins, t0.Add(90*time.Second))
	}
}
