package kubeclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/internal/kubeclient"
)

// stallServer accepts requests and never answers until the test ends, like a
// black-holed API server.
func stallServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

func TestConfigureSetsRateLimits(t *testing.T) {
	cfg, err := kubeclient.Configure(&rest.Config{Host: "https://example.invalid"}, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != kubeclient.DefaultQPS || cfg.Burst != kubeclient.DefaultBurst {
		t.Fatalf("QPS/Burst = %v/%d, want %v/%d", cfg.QPS, cfg.Burst, kubeclient.DefaultQPS, kubeclient.DefaultBurst)
	}
	cfg, err = kubeclient.Configure(cfg, kubeclient.Options{QPS: 7, Burst: 9, UserAgent: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != 7 || cfg.Burst != 9 || cfg.UserAgent != "x" {
		t.Fatalf("got QPS %v Burst %d UserAgent %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
	}
}

func TestConfigureRejectsNegative(t *testing.T) {
	for _, o := range []kubeclient.Options{{QPS: -1}, {Burst: -1}, {RequestTimeout: -time.Second}} {
		if _, err := kubeclient.Configure(&rest.Config{}, o); err == nil {
			t.Errorf("Configure(%+v) = nil error", o)
		}
	}
	if _, err := kubeclient.Configure(nil, kubeclient.Options{}); err == nil {
		t.Error("Configure(nil) = nil error")
	}
}

func TestStalledRequestHitsDeadline(t *testing.T) {
	srv := stallServer(t)
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{RequestTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The caller passes no deadline of its own: the transport must supply one.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/api/v1/namespaces", nil)
	_, err = hc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled GET: err = %v, want context.DeadlineExceeded", err)
	}
}

func TestWatchIsNotCut(t *testing.T) {
	srv := stallServer(t)
	cfg, err := kubeclient.Configure(&rest.Config{Host: srv.URL}, kubeclient.Options{RequestTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/namespaces?watch=true", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer resp.Body.Close()
	// A read outlives the request timeout several times over and ends only
	// because the test cancels it: proof that no deadline was attached.
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		done <- err
	}()
	timer := time.NewTimer(200 * time.Millisecond)
	defer timer.Stop()
	select {
	case err := <-done:
		t.Fatalf("watch body read ended early: %v", err)
	case <-timer.C:
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("watch read after cancel returned nil error")
	}
}
