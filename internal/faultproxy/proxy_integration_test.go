//go:build integration

package faultproxy_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/kubeclient"
)

// apiProxy starts a proxy to the API server, closed at the end of the test.
func apiProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	u, err := url.Parse(cp.APIServerURL())
	if err != nil {
		t.Fatal(err)
	}
	return newProxy(t, u.Host)
}

// proxiedClient is a clientset that reaches the API server through p, with
// the project's client settings (5 s per-request deadline). A dialer of its
// own keeps it out of client-go's shared transport cache: its connections
// are this test's alone, as a separate process's would be, and the HTTP/2
// settings read from the environment when the transport is built apply.
func proxiedClient(t *testing.T, p *faultproxy.Proxy) kubernetes.Interface {
	t.Helper()
	cfg, err := faultproxy.RestConfig(cp.Config, p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Insecure {
		t.Fatal("the proxied config must verify the server's certificate")
	}
	cfg, err = kubeclient.Configure(cfg, kubeclient.Options{UserAgent: "faultproxy-test"})
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	cfg.Dial = d.DialContext
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// configMap creates a config map named for the test through the admin
// client.
func configMap(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "faultproxy-"},
		Data:       map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// assertConnectionError checks that err is a failure of the connection
// itself (reset, broken pipe), not a deadline.
func assertConnectionError(t *testing.T, what string, err error) {
	t.Helper()
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: err = %v, want a connection error", what, err)
	}
}

func TestIntegrationPassReachesTheAPIServerWithTLS(t *testing.T) {
	p := apiProxy(t)
	cs := proxiedClient(t, p)
	cm := configMap(t)
	got, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get through the proxy: %v", err)
	}
	if got.UID != cm.UID {
		t.Fatalf("got UID %s, want %s", got.UID, cm.UID)
	}
	if p.Accepted() == 0 || p.Active() == 0 {
		t.Fatalf("accepted %d, active %d: the request did not go through the proxy", p.Accepted(), p.Active())
	}
}

func TestIntegrationRefuseFailsWithConnectionErrors(t *testing.T) {
	p := apiProxy(t)
	cs := proxiedClient(t, p)
	cm := configMap(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("get in pass: %v", err)
	}

	p.SetMode(faultproxy.Refuse)
	// The open connection is cut: whether the client notices before or
	// while it sends, the request fails with a connection error.
	_, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	assertConnectionError(t, "update on a cut connection", err)

	// A client with no connection yet makes exactly one per attempt, which
	// shows what client-go retries. A write is not retried: it fails on the
	// first reset.
	fresh := proxiedClient(t, p)
	before := p.Accepted()
	_, err = fresh.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	assertConnectionError(t, "update in refuse", err)
	if n := p.Accepted() - before; n != 1 {
		t.Fatalf("update made %d connections, want 1 (no retry)", n)
	}
	// A GET is retried by client-go on "connection reset", each time on a
	// new connection, a second apart; it still ends in a connection error,
	// not a deadline.
	before = p.Accepted()
	_, err = fresh.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	assertConnectionError(t, "get in refuse", err)
	if n := p.Accepted() - before; n < 2 {
		t.Fatalf("get made %d connections, want client-go's retries", n)
	}

	p.SetMode(faultproxy.Pass)
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("get back in pass: %v", err)
	}
}

// TestIntegrationBlackholeStalledConnectionIsReused shows why a client must
// have a short HTTP/2 health check to survive a black hole: with client-go's
// defaults (read idle 30 s, ping timeout 15 s) the transport keeps sending
// new requests on the stalled connection after the network is back, and
// each one runs into the request deadline, until the health check closes
// the connection about 45 s after the stall began. The test does not wait
// for that.
func TestIntegrationBlackholeStalledConnectionIsReused(t *testing.T) {
	p := apiProxy(t)
	cs := proxiedClient(t, p)
	cm := configMap(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("get in pass: %v", err)
	}

	p.SetMode(faultproxy.Blackhole)
	_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get in blackhole: err = %v, want context.DeadlineExceeded", err)
	}

	p.SetMode(faultproxy.Pass)
	before := p.Accepted()
	_, err = cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first get back in pass: err = %v, want context.DeadlineExceeded on the stalled connection", err)
	}
	if n := p.Accepted() - before; n != 0 {
		t.Fatalf("the client dialled %d new connections; this test documents that it does not (yet)", n)
	}
}

// TestIntegrationBlackholeThenPassRedials proves recovery from a black hole:
// the stalled request fails with a deadline error, and once the network is
// back the client's HTTP/2 health check closes the stalled connection and
// the client dials a new one, which works.
//
// client-go reads the health check settings from the environment when it
// builds a transport. They are shortened here the way a fault-injection
// suite should shorten them for the replicas it starts; read idle plus ping
// timeout stays above the 5 s request deadline, so that a stalled request
// ends with the deadline (not retried) rather than with the connection
// being closed under it (a GET client-go would retry, a second later, on a
// new and equally stalled connection).
func TestIntegrationBlackholeThenPassRedials(t *testing.T) {
	t.Setenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", "5")
	t.Setenv("HTTP2_PING_TIMEOUT_SECONDS", "5")
	p := apiProxy(t)
	cs := proxiedClient(t, p)
	cm := configMap(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("get in pass: %v", err)
	}

	p.SetMode(faultproxy.Blackhole)
	_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get in blackhole: err = %v, want context.DeadlineExceeded", err)
	}

	p.SetMode(faultproxy.Pass)
	stalled := p.Active()
	before := p.Accepted()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("no successful get after the black hole: %v", err)
	}
	if p.Accepted() == before {
		t.Fatal("no new connection after the black hole, yet the only one was stalled")
	}
	if p.Active() <= stalled {
		t.Fatalf("active %d, want the %d stalled connection(s) plus the new one: the stall must not have been undone", p.Active(), stalled)
	}
}
